"""Problems (SPEC 8 "Nothing fails silently"): raised by every failing path, resolved by its next success or by hand."""

import logging
from datetime import timedelta

from django.conf import settings
from django.core.mail import EmailMessage
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from impex.choices import ProblemKind
from impex.models import Connection, Problem
from impex.registry import problem_mail_of

log = logging.getLogger(__name__)

AUTO = "auto"
# An open problem not mailed this long after it was raised had its mail fail: problems_mail_unsent sends it again.
MAIL_RETRY_AFTER = timedelta(minutes=1)

# The word of the link on the home page that leads to where a person acts, by kind.
ACTIONS = {
    ProblemKind.IMPORT_JOB: "run again",
    ProblemKind.SEQUENCE_WAIT: "release",
    ProblemKind.INBOX: "open the connection",
    ProblemKind.EXPORT: "run again",
    ProblemKind.EXPORTER: "retry",
    ProblemKind.WEBHOOK: "retry",
    ProblemKind.FEED_EVENT: "open the event",
    ProblemKind.RECORD_EVENT: "open the update",
}


def problem_raise(
    *, kind: str, key: str, message: str, connection: Connection | int | None = None, url: str = ""
) -> Problem:
    """Record that key failed (call it inside the failure's transaction); mail it once committed, if it is new.

    An open problem of the same key is updated (message, url, last seen, count) and mailed to nobody again.
    """
    connection_id = connection.pk if isinstance(connection, Connection) else connection
    now = timezone.now()
    message = message[:10_000]
    with transaction.atomic():
        again = _open_again(key=key, message=message, url=url, now=now)
        if again is not None:
            return _mail_if_unmailed(again)
        try:
            with transaction.atomic():
                problem = Problem.objects.create(
                    connection_id=connection_id,
                    kind=kind,
                    key=key,
                    message=message,
                    url=url,
                    since=now,
                    last_seen=now,
                )
        except IntegrityError:
            # Another worker raised the same key meanwhile: its problem is the open one.
            again = _open_again(key=key, message=message, url=url, now=now)
            if again is None:
                raise
            return _mail_if_unmailed(again)
    problem_id = problem.pk
    transaction.on_commit(lambda: problem_mail(problem_id=problem_id))
    return problem


def _mail_if_unmailed(problem: Problem) -> Problem:
    # An open problem whose mail could not be sent yet (the mail server was down) is mailed when it is raised again.
    if problem.mailed_at is None:
        problem_id = problem.pk
        transaction.on_commit(lambda: problem_mail(problem_id=problem_id))
    return problem


def _open_again(*, key: str, message: str, url: str, now) -> Problem | None:
    rows = Problem.objects.filter(key=key, resolved_at__isnull=True)
    changes = {"message": message, "last_seen": now, "count": F("count") + 1}
    if url:
        changes["url"] = url
    if not rows.update(**changes):
        return None
    return rows.first()


def problem_resolve(
    *,
    key: str | None = None,
    keys: list[str] | None = None,
    kind: str | None = None,
    connection: Connection | int | None = None,
    problems=None,
    by: str = AUTO,
) -> int:
    """Resolve the open problems named (a key, keys, a kind of a connection, or a queryset); return how many."""
    rows = Problem.objects.filter(resolved_at__isnull=True)
    if problems is not None:
        rows = rows.filter(pk__in=problems.values("pk"))
    elif key is not None:
        rows = rows.filter(key=key)
    elif keys is not None:
        rows = rows.filter(key__in=keys)
    elif kind is not None:
        connection_id = connection.pk if isinstance(connection, Connection) else connection
        rows = rows.filter(kind=kind, connection_id=connection_id)
    else:
        raise ValueError("problem_resolve needs a key, keys, a kind or problems")
    return rows.update(resolved_at=timezone.now(), resolved_by=by[:150])


def problems_open(*, connection: Connection | None = None):
    """Return the open problems, newest first (of one connection when given)."""
    rows = Problem.objects.filter(resolved_at__isnull=True).select_related("connection")
    if connection is not None:
        rows = rows.filter(connection=connection)
    return rows.order_by("-since", "-pk")


# The first line of a job problem whose job completed (some rows or files refused): nothing to run again there.
JOB_HAS_ERRORS = "has errors"


def problem_action(problem: Problem) -> str:
    """Return the word of the link to where a person acts on the problem."""
    if problem.kind == ProblemKind.IMPORT_JOB and problem.message.split("\n", 1)[0].endswith(f" {JOB_HAS_ERRORS}"):
        return "open the job"  # its page shows the refused rows; only a failed or errored job runs again
    return ACTIONS.get(problem.kind, "open")


def problem_mail(*, problem_id: int) -> bool:
    """Mail a new problem to its connection's contacts (hub-wide ones to ADMINS), once; say if this call mailed it.

    The mail is claimed by setting mailed_at (conditionally: of two workers, or a retried task, one mails); if it
    cannot be sent, the claim is given back so that the problem's next raise, or problems_mail_unsent, mails it.
    """
    claim = timezone.now()
    if not Problem.objects.filter(pk=problem_id, mailed_at__isnull=True).update(mailed_at=claim):
        return False
    try:
        problem = Problem.objects.select_related("connection").get(pk=problem_id)
        conn = problem.connection
        recipients = conn.contact_list if conn is not None else [email for _, email in settings.ADMINS]
        if not recipients:
            return False
        _mail_of(problem, recipients).send()
    except Exception:  # a mail server down must not undo or stop the work that found the problem
        log.exception("the mail of problem #%s could not be sent; it is sent again later", problem_id)
        Problem.objects.filter(pk=problem_id, mailed_at=claim).update(mailed_at=None)
        return False
    return True


def problems_mail_unsent(*, now=None) -> int:
    """Mail the open problems whose mail could not be sent (raised over a minute ago); return how many were mailed."""
    now = now or timezone.now()
    unsent = Problem.objects.filter(resolved_at__isnull=True, mailed_at__isnull=True, since__lte=now - MAIL_RETRY_AFTER)
    mailed = 0
    for problem_id in unsent.order_by("pk").values_list("pk", flat=True)[:100]:
        if problem_mail(problem_id=problem_id):
            mailed += 1
        elif unsent.filter(pk=problem_id).exists():
            break  # its mail failed again: the mail server is still down, the next pass tries again
    return mailed


def _mail_of(problem: Problem, recipients: list[str]) -> EmailMessage:
    where = problem.connection.code if problem.connection is not None else "hub"
    # A kind may have a mail of its own (impex.registry.problem_mail_register, from impex's ready()).
    own_mail = problem_mail_of(problem.kind)
    if own_mail is not None:
        mail = own_mail(problem=problem, to=recipients)
        if mail is not None:
            return mail
    page = f"\n\nWhere to act: {problem.url}\n" if problem.url else "\n"
    return EmailMessage(
        subject=f"[impex-hub] {where}: {problem.get_kind_display()}",
        body=(
            f"{problem.get_kind_display()} ({problem.key}) since {problem.since:%Y-%m-%d %H:%M} UTC:\n\n"
            f"{problem.message}{page}"
            'You get this mail once; the hub\'s home page lists it under "Needs attention" until it is resolved.\n'
        ),
        to=recipients,
    )
