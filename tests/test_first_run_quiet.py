"""A quiet first run: with DEBUG on (as `make run` sets) and no EMAIL_BACKEND, mails are saved as files in var/mail
with one log line each, not printed whole into the console; a deployment's EMAIL_BACKEND is used as it is. And
`make help` and the README's first block say how to pick the address (ADDR).

Each test runs manage.py in a subprocess with its own settings (not the test suite's, whose mails go to
mail.outbox), a fresh SQLite file and var dir, as a new machine does."""

import email
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings

ROOT = Path(settings.BASE_DIR)


def manage(*args, var_dir: Path, **env_vars) -> subprocess.CompletedProcess:
    """Run manage.py as `make run`'s steps do: DEBUG on, no SECRET_KEY (the var dir's key file), its own settings."""
    unset = ("DATABASE_URL", "IMPEX_ROOT", "MEDIA_ROOT", "SECRET_KEY", "DJANGO_SETTINGS_MODULE", "EMAIL_BACKEND")
    env = {k: v for k, v in os.environ.items() if k not in unset and not k.startswith("EMAIL_")}
    env.update(DEBUG="1", IMPEX_VAR_DIR=str(var_dir), DATABASE_URL=f"sqlite:///{var_dir / 'db.sqlite3'}")
    env.update(env_vars)
    return subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=300
    )


def saved_mails(folder: Path) -> list[email.message.Message]:
    """Return the mails the file backend wrote (each followed by a line of dashes)."""
    found = []
    for path in sorted(folder.glob("*.log")):
        for part in path.read_text().split("\n" + "-" * 79 + "\n"):
            if part.strip():
                found.append(email.message_from_string(part))
    return found


def test_the_demos_mail_goes_to_var_mail_with_one_line_not_into_the_console(tmp_path):
    migrate = manage("migrate", "--noinput", var_dir=tmp_path)
    assert migrate.returncode == 0, migrate.stderr

    demo = manage("impex_demo", "--url", "http://127.0.0.1:8000/admin/", var_dir=tmp_path)

    assert demo.returncode == 0, demo.stderr
    console = demo.stdout + demo.stderr
    assert "MIME-Version" not in console and "Content-Type" not in console
    (mail,) = saved_mails(tmp_path / "mail")
    assert mail["To"] == "integration@acme.example"
    assert mail["Subject"] == "[impex-hub] acme-pos: import job #1 has errors"
    (line,) = [line for line in console.splitlines() if line.startswith("Mail to")]
    (saved,) = (tmp_path / "mail").glob("*.log")
    assert line == f"Mail to integration@acme.example saved in {saved}: {mail['Subject']}"


def test_a_mail_sent_in_development_is_a_file_and_one_line(tmp_path):
    sent = manage("sendtestemail", "ops@example.com", var_dir=tmp_path)

    assert sent.returncode == 0, sent.stderr
    assert "MIME-Version" not in sent.stdout + sent.stderr
    (mail,) = saved_mails(tmp_path / "mail")
    assert mail["To"] == "ops@example.com"
    assert sent.stderr.count("Mail to ops@example.com saved in ") == 1


@pytest.mark.parametrize(
    ("env_vars", "backend"),
    [
        ({}, "config.mail.DevelopmentFileBackend"),
        ({"DEBUG": "0", "SECRET_KEY": "k" * 50}, "django.core.mail.backends.console.EmailBackend"),
        (
            {"EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend"},
            "django.core.mail.backends.smtp.EmailBackend",
        ),
    ],
)
def test_a_deployments_email_backend_wins(tmp_path, env_vars, backend):
    shown = manage(
        "shell", "-c", "from django.conf import settings; print(settings.EMAIL_BACKEND)", var_dir=tmp_path, **env_vars
    )

    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.strip().splitlines()[-1] == backend


def test_make_help_and_the_readmes_first_block_mention_addr():
    shown = subprocess.run(["make", "-s", "-C", str(ROOT), "help"], capture_output=True, text=True, timeout=30)
    start_here = (ROOT / "README.md").read_text().split("## Start here", 1)[1].split("```", 2)[1]

    assert shown.returncode == 0, shown.stderr
    assert "make run ADDR=0.0.0.0:8080" in shown.stdout
    assert "var/mail/" in shown.stdout
    assert "make run ADDR=0.0.0.0:8080" in start_here
