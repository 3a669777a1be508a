"""The test harness: everything the test folders share, in one place.

- ``service``: the launcher. ``Gunicorn`` (any gunicorn master on a free port; the
  benchmarks' GunicornService is one), ``Service`` (``falconproc serve`` with its data
  under one directory) and ``Launcher`` (what tests/conftest.py's ``launcher`` fixture
  hands out); ``make_service``, ``service_env``, ``subprocess_env``, ``free_port``,
  ``kill_service_tree``, ``wait_web_workers``, ``peer_ports``, ``run_cli``. Tests never
  start a service directly: they request a fixture of tests/conftest.py (``service``,
  ``module_service``, ``fresh_service``) or one of their own built on its ``launcher``
  fixture, which is how every such test gets the ``blackbox`` marker (see
  tests/conftest.py).
- ``http``: requests against a running service (``upload``, ``raw_request``,
  ``health``, ``get_original``, ``get_job``, ``wait_job``, ``assert_error`` ...).
- ``content``: bytes to send (``sha256``, ``text_blob``, ``unique_text``, ``unique_png``,
  ``chunks``).
- ``store``: the store on disk (``stored_entries``, ``temp_entries``, ``entry_problems``,
  in-process staging helpers).
- ``corpus``: paths into tests/data (``ROOT``, ``DATA``, ``CORPUS_FILES``, ``IMAGES_DIR``,
  ``IMAGE_CORPUS``, ``DOCS``, ``OCR_PNG``, ``OCR_TRUTH``).
- ``inprocess``: the service's parts built over temp dirs, no HTTP (``unit_settings``,
  ``build_imaging``).
- ``jobs``: the job queue of a running service (``open_service_queue``,
  ``random_hash``, ``JOB_PLUGINS``); ``jobs_plugin``: test-only job types, loaded by the
  service with ``JOB_PLUGINS=tests.support.jobs_plugin``.
- ``wait``: ``wait_for``, the one polling loop.

Nothing here imports pytest at module level except where a fixture needs it, so the
benchmarks (run as ``python benchmarks/bench_x.py``) can import the launcher.
"""
