"""Periodic jobs: schedules declared in ``BOURBON_JOBS["PERIODIC"]`` or in the admin, fired by ``runworkers``.

- :mod:`.timing`: when a schedule's runs fall (cron in a time zone across DST, or a fixed interval);
- :mod:`.definitions`: what a schedule is made of, checked key by key (settings and admin alike);
- :mod:`.sync`: the settings' schedules copied into ``PeriodicSchedule`` rows (read-only in the admin);
- :mod:`.firing`: :class:`~.firing.PeriodicFirer`, the supervisor's duty that enqueues due runs,
  exactly once per (schedule, scheduled time) by a unique constraint;
- :mod:`.control`: what operators do (the admin): run now, pause, resume, save an edit.

See ``docs/periodic.md``.
"""
