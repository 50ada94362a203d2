"""Folders and hosts the hub may use (SPEC 13, issue 16 C1 and M5): under the allowed roots, never its own files,
SFTP logins only for listed hosts at allowed addresses; checked when saved and again before every use.

The attacks are replayed on stand-ins: a folder named like site-packages outside the roots, a folder of secrets, a
var/ folder with a secret key and a database. Nothing here writes to the real site-packages: the real one is only
ever saved as a location (refused) or turned into a storage (refused), never written to.
"""

import io
import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import paramiko
import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.core.management.base import CommandError

from impex.exceptions import ConfigurationError, LocationRefused
from impex.models import Connection, DataDescriptor, DataGroup, ImportFile, ImportJob
from impex.storage import storage_for
from impex.tasks import export_group_run
from impex.tests.helpers import aged, bspk_name, process_env, run_import, special_order_row, table_text
from syncapp.models import SpecialOrder
from tests.fixtures import ssh_on_loopback

pytestmark = pytest.mark.django_db

ATTACK_NAME = "zz_atk.pth"  # a rejected file of this name in site-packages would run in every Python process
ATTACK_CODE = b"import os; os.system('touch /tmp/pwned')\n"


@pytest.fixture(autouse=True)
def tight(settings):
    """Only IMPEX_ROOT is allowed unless a test lists a root; inbox files are taken at once."""
    settings.IMPEX_ALLOWED_LOCAL_ROOTS = []
    settings.IMPEX_INBOX_QUIET_SECONDS = 0


@pytest.fixture
def stand_in(tmp_path) -> Path:
    """A folder outside the roots that plays the app's site-packages."""
    folder = tmp_path / "lib" / "python3.11" / "site-packages"
    folder.mkdir(parents=True)
    return folder


@pytest.fixture
def secrets(tmp_path) -> Path:
    """A folder of secrets outside the roots."""
    folder = tmp_path / "secrets"
    folder.mkdir()
    for name in ("id_rsa", "aws_credentials"):
        aged(_write(folder / name, b"top secret\n"))
    return folder


def _write(path: Path, content: bytes) -> Path:
    path.write_bytes(content)
    return path


def connection_command(*args) -> dict:
    """Run impex_connection with --json; return its JSON."""
    out = io.StringIO()
    call_command("impex_connection", *args, "--json", stdout=out)
    return json.loads(out.getvalue().strip().splitlines()[-1])


def scan_command(code: str) -> tuple[int, str, dict]:
    """Run impex_scan --json on one connection; return its exit code, what it wrote to stderr and its JSON."""
    out, err = io.StringIO(), io.StringIO()
    exit_code = 0
    try:
        call_command("impex_scan", "--connection", code, "--json", stdout=out, stderr=err)
    except SystemExit as exc:
        exit_code = exc.code
    return exit_code, err.getvalue(), json.loads(out.getvalue().strip().splitlines()[-1])


def old_data(conn: Connection, **locations) -> None:
    """Set locations as a row saved before the rules would hold them: past every check."""
    Connection.objects.filter(pk=conn.pk).update(**locations)


def listing(folder: Path) -> list[str]:
    return sorted(os.listdir(folder))


def special_orders_file(folder: Path, timestamp: str = "202611011000") -> Path:
    name = bspk_name("SPECIAL-ORDERS", timestamp)
    return aged(_write(folder / name, table_text([special_order_row("SO-1")], delimiter=",").encode()))


# -- refused when saved ------------------------------------------------------------------------------------------------


def test_impex_connection_refuses_an_error_folder_in_the_apps_site_packages_whatever_the_roots(settings):
    site_packages = sysconfig.get_paths()["purelib"]
    # Even a root that holds it does not make the hub's own Python a place for files.
    settings.IMPEX_ALLOWED_LOCAL_ROOTS = [str(Path(site_packages).parent)]

    with pytest.raises(CommandError) as refused:
        connection_command("acme", "--convention", "bspk", "--company", "Acme", "--error-folder", site_packages)

    assert "--error-folder: The error folder " in str(refused.value)
    assert "the hub's own files" in str(refused.value)
    assert not Connection.objects.exists()


def test_impex_connection_refuses_an_inbox_outside_the_roots_and_names_them(secrets, settings):
    with pytest.raises(CommandError) as refused:
        connection_command("acme", "--convention", "bspk", "--company", "Acme", "--inbox", str(secrets))

    message = str(refused.value)
    assert f"--inbox: The inbox {secrets} is outside the folders the hub may use" in message
    assert f"IMPEX_ROOT ({settings.IMPEX_ROOT})" in message
    assert "IMPEX_ALLOWED_LOCAL_ROOTS (none)" in message
    assert not Connection.objects.exists()


def test_an_inbox_at_the_hubs_var_folder_is_refused_even_under_a_listed_root(tmp_path, settings):
    var = tmp_path / "var"
    (var / "impex").mkdir(parents=True)
    _write(var / "secret_key", b"the key")
    _write(var / "db.sqlite3", b"SQLite format 3\x00")
    settings.VAR_DIR = var
    settings.IMPEX_ROOT = var / "impex"
    settings.IMPEX_ALLOWED_LOCAL_ROOTS = [str(tmp_path)]

    for option, value in (("--inbox", var), ("--archive", var / "cache"), ("--outbox", settings.IMPEX_CACHE_DIR)):
        with pytest.raises(CommandError, match="the hub's own files"):
            connection_command("acme", "--convention", "bspk", "--company", "Acme", option, str(value))
    # IMPEX_ROOT, inside var/ by default, stays the hub's place for files.
    made = connection_command("acme", "--convention", "bspk", "--company", "Acme", "--inbox", str(var / "impex/in"))
    assert made["inbox"] == str(var / "impex/in")


def test_a_link_that_leads_out_of_a_root_is_refused_when_saved(tmp_path, secrets, settings):
    drops = tmp_path / "drops"
    drops.mkdir()
    (drops / "acme").symlink_to(secrets)
    settings.IMPEX_ALLOWED_LOCAL_ROOTS = [str(drops)]

    with pytest.raises(CommandError, match=rf"a link to {secrets}\) is outside the folders the hub may use"):
        connection_command("acme", "--convention", "bspk", "--company", "Acme", "--inbox", str(drops / "acme"))


def test_a_relative_root_in_the_setting_stops_the_start(tmp_path):
    env = {**process_env(), "IMPEX_ALLOWED_LOCAL_ROOTS": f"{tmp_path},drops"}

    done = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=Path(__file__).resolve().parents[2],
        env=env,
        capture_output=True,
        text=True,
    )

    assert done.returncode != 0
    assert "IMPEX_ALLOWED_LOCAL_ROOTS takes absolute paths separated by commas, not drops" in done.stderr


def test_a_folder_name_that_climbs_out_of_the_hubs_storage_is_refused(db):
    with pytest.raises(CommandError, match="without '..', '.' or empty parts"):
        connection_command("acme", "--convention", "bspk", "--company", "Acme", "--archive", "../../secrets")


# -- refused at use: a location saved before the rules ---------------------------------------------------------------


def test_an_error_folder_saved_before_the_rules_stops_the_import_and_nothing_lands_there(
    tmp_path, bspk_connection, stand_in
):
    old_data(bspk_connection, error_folder=str(stand_in))
    upload = _write(tmp_path / ATTACK_NAME, ATTACK_CODE)

    exit_code, report = run_import(upload, connection="acme-pos")

    assert exit_code == 1
    job = ImportJob.objects.get()
    assert job.status == "errored"
    assert f"acme-pos cannot be used: its error folder: the local folder {stand_in} is outside" in job.error
    assert listing(stand_in) == []
    # The file waits in the job, untouched: run again once the folder is mended.
    assert ImportFile.objects.get().status == "queued"


def test_an_inbox_saved_before_the_rules_is_a_failed_scan_and_its_files_stay(bspk_connection, secrets):
    old_data(bspk_connection, inbox=str(secrets))

    exit_code, stderr, report = scan_command("acme-pos")

    assert exit_code == 1
    assert report["connections"] == [{"connection": "acme-pos", "job": None, "files": []}]
    assert f"its inbox: the local folder {secrets} is outside the folders the hub may use" in stderr
    state = Connection.objects.get(pk=bspk_connection.pk).state
    assert state.last_scan_ok is False and "IMPEX_ALLOWED_LOCAL_ROOTS" in state.last_scan_message
    assert listing(secrets) == ["aws_credentials", "id_rsa"]
    assert not ImportFile.objects.exists()


def test_an_archive_saved_before_the_rules_stops_the_scan_before_a_file_leaves_the_inbox(
    bspk_connection, stand_in, tmp_path, settings
):
    inbox = tmp_path / "impex" / "acme-pos" / "inbox"
    inbox.mkdir(parents=True)
    special_orders_file(inbox)
    old_data(bspk_connection, archive_folder=str(stand_in))

    exit_code, stderr, _ = scan_command("acme-pos")

    assert exit_code == 1 and "its archive folder: the local folder" in stderr
    assert listing(inbox) == [bspk_name("SPECIAL-ORDERS")]
    assert listing(stand_in) == []
    assert not SpecialOrder.objects.exists()


def test_a_file_url_outside_the_roots_is_refused_at_use(bspk_connection, secrets):
    old_data(bspk_connection, inbox=f"file://{secrets}")

    exit_code, stderr, _ = scan_command("acme-pos")

    assert exit_code == 1 and f"the local folder {secrets} is outside" in stderr
    assert listing(secrets) == ["aws_credentials", "id_rsa"]
    with pytest.raises(LocationRefused):
        storage_for(f"file://localhost{secrets}/")


def test_the_hubs_own_python_is_refused_as_a_storage_whatever_the_roots(settings):
    site_packages = sysconfig.get_paths()["purelib"]
    settings.IMPEX_ALLOWED_LOCAL_ROOTS = ["/"]

    with pytest.raises(LocationRefused, match=r"lies in the hub's own files"):
        storage_for(site_packages)
    with pytest.raises(LocationRefused, match=r"holds the hub's own files"):
        storage_for("/")


def test_a_link_inside_a_root_that_leads_out_since_is_refused_at_use(tmp_path, bspk_connection, secrets, settings):
    drops = tmp_path / "drops"
    (drops / "real").mkdir(parents=True)
    (drops / "acme").symlink_to(drops / "real")
    settings.IMPEX_ALLOWED_LOCAL_ROOTS = [str(drops)]
    connection_command("acme-pos", "--inbox", str(drops / "acme"))
    # Re-pointed after it was saved.
    (drops / "acme").unlink()
    (drops / "acme").symlink_to(secrets)

    exit_code, stderr, _ = scan_command("acme-pos")

    assert exit_code == 1 and f"(a link to {secrets}) is outside the folders the hub may use" in stderr
    assert listing(secrets) == ["aws_credentials", "id_rsa"]


def test_a_listed_root_that_is_a_link_is_followed_anew_at_each_check(tmp_path, settings):
    # The operator's root is a link: moved to another folder, what lay under the old one is outside at once.
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    root = tmp_path / "drops"
    root.symlink_to(tmp_path / "a")
    settings.IMPEX_ALLOWED_LOCAL_ROOTS = [str(root)]
    assert storage_for(str(tmp_path / "a"))
    root.unlink()
    root.symlink_to(tmp_path / "b")
    with pytest.raises(LocationRefused, match="outside the folders the hub may use"):
        storage_for(str(tmp_path / "a"))


def test_a_hub_folder_made_after_a_first_check_is_refused_at_once(tmp_path, settings):
    # MEDIA_ROOT does not exist at the first check; made since as a link to the folder, the folder is the hub's own.
    (tmp_path / "data" / "inbox").mkdir(parents=True)
    settings.IMPEX_ALLOWED_LOCAL_ROOTS = [str(tmp_path)]
    settings.MEDIA_ROOT = str(tmp_path / "media")
    assert storage_for(str(tmp_path / "data" / "inbox"))
    (tmp_path / "media").symlink_to(tmp_path / "data")
    with pytest.raises(LocationRefused, match="the hub's own files"):
        storage_for(str(tmp_path / "data" / "inbox"))


def test_a_link_in_the_hubs_own_folder_that_leads_out_is_refused_at_use(tmp_path, bspk_connection, stand_in, settings):
    # The default archive, IMPEX_ROOT/acme-pos/archive, made a link to elsewhere by hand.
    archive = Path(settings.IMPEX_ROOT) / "acme-pos" / "archive"
    archive.parent.mkdir(parents=True)
    archive.symlink_to(stand_in)
    upload = special_orders_file(tmp_path)

    exit_code, _ = run_import(upload, connection="acme-pos")

    assert exit_code == 1
    assert f"its archive folder: the local folder {archive} (a link to {stand_in})" in ImportJob.objects.get().error
    assert listing(stand_in) == []


def test_an_export_destination_saved_before_the_rules_fails_the_run_and_writes_nothing(stand_in):
    group = DataGroup.objects.create(code="out", name="Out", direction="export")
    group.descriptors.add(DataDescriptor.objects.get(code="KS_CUSTOMERS"))
    DataGroup.objects.filter(pk=group.pk).update(destination=str(stand_in))

    export_group_run(group.pk)

    run = group.export_runs.get()
    assert run.status == "failed"
    assert f"the local folder {stand_in} is outside the folders the hub may use" in run.error
    assert listing(stand_in) == []


def test_a_file_exporter_is_refused_a_destination_outside_the_roots_when_saved_and_at_use(
    tmp_path, kore_connection, stand_in
):
    from orders.models import Exporter, OrderFlag
    from orders.tests.helpers import configure, export_pass, import_catalogue, import_orders, line_row, order_row

    with pytest.raises(CommandError, match=f"--destination: The destination {stand_in} is outside"):
        configure("erp", "--flag", "erp", "--kind", "file", "--destination", str(stand_in))
    configure("erp", "--flag", "erp", "--kind", "file")
    Exporter.objects.update(destination=str(stand_in))
    import_catalogue(tmp_path / "files")
    import_orders(tmp_path / "files", [order_row("O1")], [line_row("O1", 1)])

    (run,) = export_pass()

    assert run["status"] == "failed"
    assert f"the destination cannot be used: the local folder {stand_in} is outside" in run["message"]
    assert OrderFlag.objects.get().status == "failed"  # not retried: it needs mending first
    assert listing(stand_in) == []


def test_the_start_up_check_names_every_location_saved_before_the_rules(bspk_connection, stand_in, secrets):
    from orders.models import Exporter

    old_data(bspk_connection, inbox=str(secrets), error_folder=str(stand_in))
    group = DataGroup.objects.create(code="out", name="Out", direction="export")
    DataGroup.objects.filter(pk=group.pk).update(destination=str(stand_in))
    Exporter.objects.create(code="erp", flag="erp", kind="file", destination=str(stand_in))
    err = io.StringIO()

    call_command("check", "--database", "default", stdout=io.StringIO(), stderr=err)

    warnings = err.getvalue()
    assert f"(impex.W001) connection acme-pos: The inbox {secrets} is outside" in warnings
    assert f"(impex.W001) connection acme-pos: The error folder {stand_in} is outside" in warnings
    assert f"(impex.W001) export group out: The destination {stand_in} is outside" in warnings
    assert f"(impex.W001) file exporter erp: The destination {stand_in} is outside" not in warnings
    assert f"(orders.W001) file exporter erp: The destination {stand_in} is outside" in warnings
    assert "IMPEX_ALLOWED_LOCAL_ROOTS" in warnings


# -- an allowed root, end to end -----------------------------------------------------------------------------------


def test_a_listed_root_is_an_inbox_and_an_archive_end_to_end(tmp_path, bspk_connection, settings):
    drops = tmp_path / "drops"
    (drops / "acme" / "in").mkdir(parents=True)
    settings.IMPEX_ALLOWED_LOCAL_ROOTS = [f"{drops}/"]
    connection_command("acme-pos", "--inbox", str(drops / "acme" / "in"), "--archive", str(drops / "acme" / "done"))
    special_orders_file(drops / "acme" / "in")

    exit_code, _, report = scan_command("acme-pos")

    assert exit_code == 0, report
    assert [f["status"] for f in report["connections"][0]["files"]] == ["imported"]
    assert list(SpecialOrder.objects.values_list("special_order_id", flat=True)) == ["SO-1"]
    assert listing(drops / "acme" / "in") == []
    assert listing(drops / "acme" / "done") == [bspk_name("SPECIAL-ORDERS")]


# -- SFTP: logins for listed hosts only, at addresses the hub may call (M5) --------------------------------------------


class RecordLogins(paramiko.ServerInterface):
    """An SSH server that records every login offered to it and lets nobody in."""

    def __init__(self, seen: list):
        self.seen = seen

    def get_allowed_auths(self, username):
        return "password,publickey"

    def check_auth_password(self, username, password):
        self.seen.append(("password", username, password))
        return paramiko.AUTH_FAILED

    def check_auth_publickey(self, username, key):
        self.seen.append(("publickey", username, key.get_fingerprint().hex()))
        return paramiko.AUTH_FAILED


@pytest.fixture
def listening_host():
    """A host a connection editor controls, on loopback: records the connections and logins it gets."""
    seen: list = []
    with ssh_on_loopback(lambda: RecordLogins(seen)) as host:
        yield host.port, seen, host.transports


@pytest.fixture
def trusting(settings, tmp_path):
    """The set-up M5 was found with: unknown host keys accepted, and a password for every SFTP host."""
    settings.SFTP_ALLOW_UNKNOWN_HOSTS = True
    settings.SFTP_KNOWN_HOST_FILE = str(tmp_path / "known_hosts")
    settings.SFTP_PASSWORD = "the-hubs-sftp-password"
    settings.SFTP_KEY_FILE = None
    settings.SFTP_HOSTS = {"files.acme.example": {}}


def test_the_sftp_password_is_not_offered_to_a_host_the_operator_did_not_list(
    bspk_connection, listening_host, trusting
):
    port, seen, connections = listening_host
    old_data(bspk_connection, inbox=f"sftp://hub@127.0.0.1:{port}/in")

    exit_code, stderr, _ = scan_command("acme-pos")

    assert exit_code == 1
    assert f"the SFTP host 127.0.0.1:{port} is not listed in SFTP_HOSTS" in stderr
    assert seen == [] and connections == []


def test_impex_connection_refuses_an_sftp_host_that_is_not_listed(listening_host, trusting):
    port, seen, _ = listening_host

    with pytest.raises(CommandError, match=f"the SFTP host 127.0.0.1:{port} is not listed in SFTP_HOSTS"):
        connection_command(
            "acme", "--convention", "bspk", "--company", "Acme", "--inbox", f"sftp://127.0.0.1:{port}/in"
        )
    assert not Connection.objects.exists() and seen == []


def test_an_sftp_host_at_a_private_address_is_refused_unless_listed(settings):
    settings.IMPEX_ALLOWED_HOSTS_OUTBOUND = []
    settings.SFTP_HOSTS = {"10.1.2.3": {}}
    args = ("acme", "--convention", "bspk", "--company", "Acme", "--inbox", "sftp://drop@10.1.2.3/in")

    with pytest.raises(CommandError, match=r"10\.1\.2\.3 is a private address .*IMPEX_ALLOWED_HOSTS_OUTBOUND"):
        connection_command(*args)
    settings.IMPEX_ALLOWED_HOSTS_OUTBOUND = ["10.0.0.0/8"]
    assert connection_command(*args)["inbox"] == "sftp://drop@10.1.2.3/in"


def test_an_sftp_inbox_at_an_address_no_longer_allowed_is_not_connected_to(
    bspk_connection, listening_host, trusting, settings
):
    port, seen, connections = listening_host
    settings.SFTP_HOSTS = {"127.0.0.1": {}}
    settings.IMPEX_ALLOWED_HOSTS_OUTBOUND = []
    old_data(bspk_connection, inbox=f"sftp://hub@127.0.0.1:{port}/in")

    exit_code, stderr, _ = scan_command("acme-pos")

    assert exit_code == 1
    assert "127.0.0.1 is a loopback address (127.0.0.1)" in stderr and "IMPEX_ALLOWED_HOSTS_OUTBOUND" in stderr
    assert seen == [] and connections == []


def test_a_listed_sftp_host_gets_its_login_through_the_checked_connection(
    bspk_connection, listening_host, trusting, settings
):
    port, seen, _ = listening_host
    settings.SFTP_HOSTS = {f"127.0.0.1:{port}": {}}
    old_data(bspk_connection, inbox=f"sftp://hub@127.0.0.1:{port}/in")

    exit_code, stderr, _ = scan_command("acme-pos")

    # The listening host refuses every login: what matters is what it was offered.
    assert exit_code == 1 and "SFTP login as 'hub'" in stderr
    assert ("password", "hub", "the-hubs-sftp-password") in seen


@pytest.mark.parametrize(
    "location, says",
    [
        ("s3://Bucket/in", "does not name a valid S3 bucket"),
        ("s3://b/in", "does not name a valid S3 bucket"),
        ("s3://bucket.with_underscore/in", "does not name a valid S3 bucket"),
        ("s3://acme-files/a%2F..%2Fb", "has a prefix with '..', '.' or empty parts"),
        ("file://elsewhere/in", "must be file:///absolute/path"),
    ],
)
def test_a_location_every_use_would_refuse_is_refused_when_saved(location, says):
    # One parser (impex.locations.parse_location) and the backends' own rules: saved only what will work.
    conn = Connection(code="acme", convention="bspk", company_name="ACME", inbox=location)

    with pytest.raises(ValidationError) as refused:
        conn.full_clean()

    assert says in " ".join(refused.value.message_dict["inbox"])
    with pytest.raises((ConfigurationError, LocationRefused)):
        storage_for(location)


def test_a_file_url_is_checked_as_the_folder_it_names(tmp_path, secrets, settings):
    settings.IMPEX_ALLOWED_LOCAL_ROOTS = [str(tmp_path / "allowed")]
    (tmp_path / "allowed" / "in").mkdir(parents=True)
    inside = Connection(code="acme", convention="bspk", company_name="ACME", inbox=f"file://{tmp_path}/allowed/in")
    outside = Connection(code="acme2", convention="bspk", company_name="ACME2", inbox=f"file://{secrets}")

    inside.full_clean()
    with pytest.raises(ValidationError) as refused:
        outside.full_clean()

    assert "outside the folders the hub may use" in " ".join(refused.value.message_dict["inbox"])
    assert storage_for(inside.inbox).where("x.csv") == f"{tmp_path}/allowed/in/x.csv"


def test_a_link_inside_a_confined_folder_is_neither_read_nor_walked(tmp_path, secrets, settings):
    settings.IMPEX_ALLOWED_LOCAL_ROOTS = [str(tmp_path / "allowed")]
    folder = tmp_path / "allowed" / "in"
    (folder / "real").mkdir(parents=True)
    _write(folder / "real" / "ok.csv", b"ok\n")
    (folder / "s.csv").symlink_to(secrets / "id_rsa")
    (folder / "dirlink").symlink_to(secrets)
    store = storage_for(str(folder))

    assert [f.name for f in store.list_files("")] == ["real/ok.csv"]
    with pytest.raises(FileNotFoundError, match="symbolic link"):
        store.open("s.csv")
    with pytest.raises(FileNotFoundError, match="symbolic link"):
        store.open("dirlink/id_rsa")
    with store.open("real/ok.csv") as fh:
        assert fh.read() == b"ok\n"
