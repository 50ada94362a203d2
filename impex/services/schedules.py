"""The django-q2 schedules of impex, derived from code and data by one idempotent function."""

from django.db import transaction
from django.utils import timezone
from django_q.models import Schedule

# name -> (task, minutes between runs)
SYSTEM_SCHEDULES = {
    "impex: queue again import jobs whose worker died": ("impex.tasks.import_jobs_requeue", 1),
    "impex: tell contacts about long sequence waits": ("impex.tasks.sequence_wait_alerts", 5),
}


@transaction.atomic
def schedules_sync() -> list[str]:
    """Install or update the schedules impex needs, each exactly once by name; return their names."""
    for name, (func, minutes) in SYSTEM_SCHEDULES.items():
        schedule = Schedule.objects.select_for_update().filter(name=name).order_by("pk").first()
        if schedule is None:
            Schedule.objects.create(
                name=name,
                func=func,
                schedule_type=Schedule.MINUTES,
                minutes=minutes,
                repeats=-1,
                next_run=timezone.now(),
            )
            continue
        Schedule.objects.filter(name=name).exclude(pk=schedule.pk).delete()
        if (schedule.func, schedule.schedule_type, schedule.minutes) != (func, Schedule.MINUTES, minutes):
            Schedule.objects.filter(pk=schedule.pk).update(func=func, schedule_type=Schedule.MINUTES, minutes=minutes)
    return list(SYSTEM_SCHEDULES)
