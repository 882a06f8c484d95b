"""sendwell's own test machinery: throw-away servers on 127.0.0.1 for the tests, the demo and the
benchmarks. It is not part of the wheel (``packages = ["src/sendwell"]``): it lives in the
repository, importable from its root (pytest's ``pythonpath``, ``./dev demo``, the benchmarks'
children all put the root on ``sys.path``).

- :mod:`testservers.base`: ``free_port()``, the :class:`~testservers.base.TestServer` base and
  ``stop_process()``, shared by every server below;
- :mod:`testservers.postgres`, :mod:`testservers.redis`: the distribution's server binaries;
- :mod:`testservers.smtp`: an aiosmtpd SMTP server (STARTTLS, implicit TLS, AUTH, chosen replies);
- :mod:`testservers.moto_ses`: moto's SES endpoint in a subprocess;
- :mod:`testservers.fake_ses`: an SES endpoint with fault injection and enforced sending limits,
  in-process (``FakeSES``) or as a process (``python -m testservers.fake_ses``,
  steered with ``FakeSESProcess``).
"""
