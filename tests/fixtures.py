"""Fixtures shared by every test module: isolated folders and demo-like connections."""

import pytest


@pytest.fixture(autouse=True)
def impex_root(tmp_path, settings):
    """Give every test its own IMPEX_ROOT and MEDIA_ROOT."""
    settings.IMPEX_ROOT = tmp_path / "impex"
    settings.MEDIA_ROOT = tmp_path / "media"
    return settings.IMPEX_ROOT


@pytest.fixture
def bspk_connection(db):
    """A BSPK connection for the company Acme."""
    from impex.models import Connection

    return Connection.objects.create(code="acme-pos", name="Acme POS", convention="bspk", company_name="Acme")


@pytest.fixture
def kore_connection(db):
    """A Kore connection with integration id INT1."""
    from impex.models import Connection

    return Connection.objects.create(code="kore-erp", name="Kore ERP", convention="kore", integration_id="INT1")
