import pytest
from django.db import connection
from impex.models import DataDescriptor

@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_dbg_a():
    print("A", hasattr(connection, "_test_serialized_contents"), len(getattr(connection, "_test_serialized_contents", "") or ""), DataDescriptor.objects.count())

@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_dbg_b():
    print("B", hasattr(connection, "_test_serialized_contents"), DataDescriptor.objects.count())
