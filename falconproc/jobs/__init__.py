"""Running jobs: the job-type registry and JobContext, the scheduler that turns an upload
into jobs, the supervisor that runs them in killable child processes, and its keeper
under gunicorn. Job types come from capability packages through the registry."""
