"""`AnyOf`: IN over a list of ids, one array parameter on PostgreSQL."""

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.db.models import F

from core.lookups import AnyOf

pytestmark = pytest.mark.django_db


def test_it_finds_what_in_finds(make_user):
    users = [make_user() for _ in range(4)]
    wanted = [users[0].pk, users[2].pk, 10**9, None]
    found = get_user_model().objects.filter(AnyOf(F("pk"), wanted))
    assert sorted(found.values_list("pk", flat=True)) == [users[0].pk, users[2].pk]
    assert not get_user_model().objects.filter(AnyOf(F("pk"), [])).exists()
    # A subquery is left to IN.
    subquery = get_user_model().objects.filter(pk=users[1].pk).values("pk")
    assert list(get_user_model().objects.filter(AnyOf(F("pk"), subquery)).values_list("pk", flat=True)) == [users[1].pk]


@pytest.mark.postgres
def test_on_postgresql_any_length_is_one_parameter(make_user):
    user = make_user()
    executed = []

    def record(execute, sql, params, many, context):
        executed.append((sql, params))
        return execute(sql, params, many, context)

    with connection.execute_wrapper(record):
        ids = [user.pk, *range(10**9, 10**9 + 3000)]
        assert list(get_user_model().objects.filter(AnyOf(F("pk"), ids)).values_list("pk", flat=True)) == [user.pk]
    [(sql, params)] = executed
    assert sql.endswith("= ANY(%s)") and len(params) == 1 and sorted(params[0]) == sorted(ids)
