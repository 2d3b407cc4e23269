"""bulkops inside a Django app: the shop workloads of ``bulkops bench`` as Django
models and requests in ``transaction.atomic()``, on SQLite and on PostgreSQL, counted
with Django's own ``CaptureQueriesContext``.

Django is configured here (two aliases: "default" on a SQLite file, "pg" on the
suite's PostgreSQL server); the tables are made with Django's schema editor.
"""

from __future__ import annotations

import datetime as dt
import os
import tempfile
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

import pytest

django = pytest.importorskip("django")
from django.conf import settings  # noqa: E402

if not settings.configured:
    settings.configure(
        DATABASES={
            "default": {
                "ENGINE": "django.db.backends.sqlite3",
                "NAME": os.path.join(tempfile.mkdtemp(prefix="bulkops-django-"), "shop.db"),
            },
            # Pointed at the suite's server by the fixture below.
            "pg": {"ENGINE": "django.db.backends.postgresql", "NAME": "unset"},
        },
        INSTALLED_APPS=[],
        USE_TZ=True,
        TIME_ZONE="UTC",
    )
    django.setup()

from django.db import connections, transaction  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402
from django.utils import timezone  # noqa: E402

import bulkops  # noqa: E402
import django_shop as shop_app  # noqa: E402
from bulkops.errors import UnsupportedError  # noqa: E402
from conftest import vendored_module  # noqa: E402

ALIASES = ["default", pytest.param("pg", marks=pytest.mark.postgres)]


@pytest.fixture(params=ALIASES)
def alias(request: pytest.FixtureRequest, django_db_blocker: Any) -> Iterator[str]:
    """A Django database alias with the shop's tables, empty."""
    name = request.param
    with django_db_blocker.unblock():
        connection = connections[name]
        if name == "pg":
            url = urlsplit(request.getfixturevalue("pg_url"))
            connection.close()
            connection.settings_dict.update(
                NAME=url.path.lstrip("/"), USER=url.username, HOST=url.hostname,
                PORT=str(url.port), PASSWORD="",
            )  # fmt: skip
        _recreate(connection)
        yield name
        connection.close()


def _recreate(connection: Any) -> None:
    tables = set(connection.introspection.table_names())
    with connection.schema_editor() as editor:
        for model in reversed(shop_app.MODELS):
            if model._meta.db_table in tables:
                editor.delete_model(model)
        for model in shop_app.MODELS:
            editor.create_model(model)


def counted(alias: str, work: Any, *args: Any) -> tuple[Any, list[str]]:
    """``work(*args)`` in ``transaction.atomic()``, with the queries Django saw."""
    connection = connections[alias]
    with transaction.atomic(using=alias), CaptureQueriesContext(connection) as queries:
        result = work(*args)
    return result, [q["sql"] for q in queries.captured_queries]


def test_views_scores_orders_in_a_few_queries(alias: str, django_db_blocker: Any) -> None:
    with django_db_blocker.unblock():
        db = bulkops.connect(connections[alias])
        # The Store reads each model's table from the catalog once, on first use (an
        # app can do it at start-up): one query per model, then none.
        _, startup_sql = counted(alias, lambda: [db.table(m) for m in shop_app.MODELS])
        assert len(startup_sql) == len(shop_app.MODELS)
        shop_app.seed(db, 100, stock=(5, 40))
        events = shop_app.views_events(100)
        # Some events were recorded by an earlier request: they are not recorded twice.
        shop_app.record_views(db, events[:5])
        report, views_sql = counted(alias, shop_app.record_views, db, events)
        print(f"\n{alias}: views 100 -> {len(views_sql)} queries")
        assert len(views_sql) <= 7, "\n".join(map(str, views_sql))
        distinct = {e["event_id"] for e in events}
        assert shop_app.ProductView.objects.using(alias).count() == len(distinct)
        assert report.ignored + report.inserted + report.duplicates == len(events)

        incoming = shop_app.scores_incoming(50)
        shop_app.upsert_scores(db, incoming[::2])  # about half are stored already
        report, scores_sql = counted(alias, shop_app.upsert_scores, db, incoming)
        print(f"{alias}: scores 50 -> {len(scores_sql)} queries")
        assert len(scores_sql) <= 7, "\n".join(map(str, scores_sql))
        latest = {(s["email"], s["sku"], s["algorithm"]): s["score"] for s in incoming}
        stored = {
            (s.user.email, s.product.sku, s.algorithm): s.score
            for s in shop_app.Score.objects.using(alias).select_related("user", "product")
        }
        assert stored == latest

        batch = shop_app.orders_incoming(10)
        before = dict(shop_app.Product.objects.using(alias).values_list("id", "stock"))
        _, orders_sql = counted(alias, shop_app.process_orders, db, batch)
        print(f"{alias}: orders 10 -> {len(orders_sql)} queries")
        assert len(orders_sql) <= 10, "\n".join(map(str, orders_sql))
        after = dict(shop_app.Product.objects.using(alias).values_list("id", "stock"))
        assert min(after.values()) >= 0
        lines = shop_app.OrderLine.objects.using(alias)
        for product_id, stock in before.items():
            taken = sum(line.quantity for line in lines.filter(product_id=product_id))
            assert after[product_id] == stock - taken
        orders = shop_app.Order.objects.using(alias)
        assert orders.count() == 10
        for order in orders.filter(status="accepted"):
            total = sum(
                (line.price * line.quantity for line in lines.filter(order=order)), Decimal(0)
            )
            assert order.total == total


def test_the_naive_versions_take_many_more_queries(alias: str, django_db_blocker: Any) -> None:
    """What the budgets above are measured against: the one-row-at-a-time ORM code."""
    with django_db_blocker.unblock():
        db = bulkops.connect(connections[alias])
        shop_app.seed(db, 100)

        def naive_views(events: list[dict[str, Any]]) -> None:
            for e in events:
                user = shop_app.User.objects.using(alias).get(email=e["email"])
                product = shop_app.Product.objects.using(alias).get(sku=e["sku"])
                shop_app.ProductView.objects.using(alias).get_or_create(
                    event_id=e["event_id"],
                    defaults={"user": user, "product": product,
                              "viewed_at": e["viewed_at"].replace(tzinfo=shop_app.UTC)},
                )  # fmt: skip

        _, naive_sql = counted(alias, naive_views, shop_app.views_events(100))
        print(f"\n{alias}: naive views 100 -> {len(naive_sql)} queries")
        assert len(naive_sql) > 300


def test_an_exception_at_the_end_of_atomic_leaves_no_row(
    alias: str, django_db_blocker: Any
) -> None:
    with django_db_blocker.unblock():
        db = bulkops.connect(connections[alias])
        with (
            pytest.raises(RuntimeError, match="end of the request"),
            transaction.atomic(using=alias),
        ):
            shop_app.seed(db, 100, stock=(5, 40))
            shop_app.record_views(db, shop_app.views_events(100))
            shop_app.upsert_scores(db, shop_app.scores_incoming(50))
            shop_app.process_orders(db, shop_app.orders_incoming(10))
            assert shop_app.Order.objects.using(alias).count() == 10
            raise RuntimeError("end of the request")
        for model in shop_app.MODELS:
            assert model.objects.using(alias).count() == 0, model.__name__


def test_refused_inside_atomic(alias: str, django_db_blocker: Any) -> None:
    with django_db_blocker.unblock():
        db = bulkops.connect(connections[alias])
        rows = [{"id": 1, "email": "a@example.com", "name": "A"}]
        with transaction.atomic(using=alias):
            for options in ({"workers": 2}, {"atomic": True}, {"source_id": "x"}):
                with pytest.raises(UnsupportedError, match="caller's transaction"):
                    db.insert(shop_app.User, rows, **options)
            with pytest.raises(UnsupportedError, match="caller's transaction"):
                db.sync(shop_app.User, rows)
            with pytest.raises(UnsupportedError, match="caller's transaction"):
                db.adjust(shop_app.Product, {1: -1}, column="stock", atomic=True)
        # Outside atomic(), in Django's autocommit, bulkops owns its transactions.
        assert db.insert(shop_app.User, rows, atomic=True).inserted == 1
        assert shop_app.User.objects.using(alias).get(pk=1).email == "a@example.com"


def test_models_give_names_keys_and_rows(alias: str, django_db_blocker: Any) -> None:
    with django_db_blocker.unblock():
        db = bulkops.connect(connections[alias])
        shop_app.seed(db, 100)
        spec = db.table(shop_app.ProductView)
        assert spec.name == "shop_productview"
        assert "product_ref" in spec.columns  # db_column
        assert spec.primary_key == ("event_id",)
        # field names, attnames and db_column alike
        db.insert(
            shop_app.ProductView,
            [
                {"event_id": "a", "user": 1, "product": 2, "viewed_at": "2024-01-01T00:00:00Z"},
                {"event_id": "b", "user_id": 1, "product_id": 3,
                 "viewed_at": "2024-01-01T00:00:00Z"},
            ],
        )  # fmt: skip
        views = shop_app.ProductView.objects.using(alias).order_by("event_id")
        assert [(v.user_id, v.product_id) for v in views] == [(1, 2), (1, 3)]
        # get_or_create uses the unique constraint its lookup covers.
        row, created = db.get_or_create(
            shop_app.Score,
            {"user": 1, "product": 2, "algorithm": "als"},
            defaults={"score": 0.5},
        )
        assert created and row["score"] == 0.5 and row["user_id"] == 1
        again, created = db.get_or_create(
            shop_app.Score, {"user_id": 1, "product_id": 2, "algorithm": "als"},
            defaults={"score": 0.9},
        )  # fmt: skip
        assert not created and again["id"] == row["id"]
        # The key defaults to the primary key; key= may name a unique constraint.
        found = db.get_many(shop_app.User, ["user1@example.com"], key="email")
        assert found["user1@example.com"]["id"] == 1


def test_a_model_with_uuid_key_json_and_auto_now_in_atomic(
    alias: str, django_db_blocker: Any
) -> None:
    """Model instances as an app builds them (a UUIDField key, JSONField, auto_now
    fields left to Django) and dict rows, written inside the app's transaction, read
    back by Django's ORM as Django itself would have written them (bulk_create)."""
    with django_db_blocker.unblock():
        db = bulkops.connect(connections[alias])
        shop_app.seed(db, 10)
        reviews = [
            shop_app.Review(product_id=1, rating=Decimal("4.5"), details={"tags": ["fast"]}),
            shop_app.Review(product_id=2, rating=Decimal("3.0"), details=None),
            shop_app.Review(product_id=2, rating=Decimal("1.0"), details="just text"),
        ]
        with transaction.atomic(using=alias):
            assert db.insert(shop_app.Review, reviews).inserted == 3
        got = {r.id: r for r in shop_app.Review.objects.using(alias).all()}
        assert set(got) == {r.id for r in reviews}
        for review in reviews:
            back = got[review.id]
            assert (back.product_id, back.rating, back.details) == (
                review.product_id, review.rating, review.details,
            )  # fmt: skip
            assert back.created is not None and back.updated is not None
        # The ORM finds them by key, and bulkops reads them by the model's UUIDs.
        assert shop_app.Review.objects.using(alias).get(pk=reviews[0].id).rating == Decimal("4.5")
        assert len(db.get_many(shop_app.Review, [r.id for r in reviews])) == 3
        # Dict rows with the model's field names and a document as a dict.
        with transaction.atomic(using=alias):
            report = db.upsert(
                shop_app.Review,
                [{"id": reviews[1].id, "product": 1, "details": {"edited": True}}],
            )
        assert report.updated == 1
        back = shop_app.Review.objects.using(alias).get(pk=reviews[1].id)
        assert (back.product_id, back.details, back.rating) == (1, {"edited": True}, 3)
        # sync and diff take the model's field names and instances as writes do.
        source = [{"id": r.id, "product": 2, "rating": r.rating} for r in reviews]
        report = db.sync(shop_app.Review, source, key="id", columns=["id", "product", "rating"])
        assert (report.changed, report.unchanged) == (2, 1), report
        assert db.sync(shop_app.Review, reviews, key="id").rows_in == 3


@pytest.mark.parametrize("columnar", [False, True], ids=["dicts", "arrow"])
def test_deferred_foreign_keys_reject_the_row_outside_atomic(
    alias: str, django_db_blocker: Any, columnar: bool
) -> None:
    # Django makes every foreign key DEFERRABLE INITIALLY DEFERRED (and turns SQLite's
    # foreign_keys on): in Django's autocommit the transactions are bulkops' own, and a
    # view of a user that does not exist costs its row, not the call. Inside atomic()
    # the keys are checked at Django's COMMIT, as for its own writes.
    from django.db import IntegrityError

    def given(rows: list[dict[str, Any]]) -> Any:
        if not columnar:
            return rows
        return pytest.importorskip("pyarrow").Table.from_pylist(rows)

    with django_db_blocker.unblock():
        db = bulkops.connect(connections[alias])
        users = [{"email": f"u{i}@example.com", "name": f"u{i}"} for i in (1, 2)]
        db.insert(shop_app.User, users)
        db.insert(shop_app.Product, [{"sku": "P1", "name": "p", "price": 1, "stock": 1}])
        user = dict(shop_app.User.objects.using(alias).values_list("email", "id"))
        product = shop_app.Product.objects.using(alias).get().id
        when = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
        views = shop_app.ProductView._meta.db_table

        def view(event: str, user_id: int) -> dict[str, Any]:
            return {
                "event_id": event,
                "user_id": user_id,
                "product_ref": product,
                "viewed_at": when,
            }

        fk_codes = {"23503", "SQLITE_CONSTRAINT_FOREIGNKEY"}
        rows = [
            view("e1", user["u1@example.com"]),
            view("e2", 999),
            view("e3", user["u1@example.com"]),
        ]
        report = db.insert(views, given(rows), on_error="isolate")
        assert (report.inserted, report.rejected) == (2, 1), report
        (bad,) = report.rejections
        assert (bad.row, bad.key, bad.column) == (2, "e2", "user_id")
        assert bad.code in fk_codes
        report = db.upsert(views, given([view("e4", 998)]), on_error="isolate")
        assert report.rejected == 1 and report.rejections[0].column == "user_id"
        report = db.update(views, given([{"event_id": "e1", "user_id": 997}]), on_error="isolate")
        assert report.rejected == 1 and report.rejections[0].column == "user_id"
        # A user still viewed cannot be deleted (Django cascades in Python, not in the
        # database); the other one is.
        gone = given([{"id": user["u1@example.com"]}, {"id": user["u2@example.com"]}])
        report = db.delete(shop_app.User._meta.db_table, gone, on_error="isolate")
        assert (report.deleted, report.rejected) == (1, 1), report
        assert report.rejections[0].code in fk_codes
        with pytest.raises(IntegrityError), transaction.atomic(using=alias):
            assert db.insert(views, given([view("e5", 996)]), on_error="isolate").inserted == 1
        stored = shop_app.ProductView.objects.using(alias).order_by("event_id")
        assert [(v.event_id, v.user_id) for v in stored] == [
            ("e1", user["u1@example.com"]),
            ("e3", user["u1@example.com"]),
        ]


# ------------------------------------------------------------ real applications' models


def test_a_custom_fields_values_are_written_as_the_field_prepares_them(
    alias: str, django_db_blocker: Any
) -> None:
    # django-celery-beat's CrontabSchedule.timezone is django-timezone-field's
    # TimeZoneField: an instance holds a ZoneInfo, and Django writes its name (the
    # field's get_prep_value). bulkops refused every row ("ZoneInfo value is not
    # text"); a name the field refuses is now that row's rejection, not the call's.
    from zoneinfo import ZoneInfo

    m = vendored_module("django_celery_beat_crontab")
    every = {"hour": "*", "day_of_month": "*", "month_of_year": "*", "day_of_week": "*"}
    with django_db_blocker.unblock():
        connection = connections[alias]
        with connection.schema_editor() as editor:
            editor.create_model(m.CrontabSchedule)
        try:
            db = bulkops.connect(connection)
            rows = [
                {"minute": "2", "timezone": "Mars/Olympus", **every},  # bad, and first
                m.CrontabSchedule(minute="0", hour="*/2", timezone=ZoneInfo("Europe/Paris")),
                m.CrontabSchedule(minute="5"),  # the field's default, "UTC"
                {"minute": "7", "timezone": ZoneInfo("Asia/Tokyo"), **every},
            ]
            with transaction.atomic(using=alias):
                report = db.insert(m.CrontabSchedule, rows, on_error="isolate")
            assert (report.inserted, report.rejected, report.rows_in) == (3, 1, 4)
            bad = report.rejections[0]
            assert (bad.row, bad.column) == (1, "timezone")
            assert bad.reason == "Invalid timezone 'Mars/Olympus'"
            assert bad.values["minute"] == "2"
            # Beside what Django's own bulk_create writes.
            objects = m.CrontabSchedule.objects.using(alias)
            objects.bulk_create([m.CrontabSchedule(minute="9", timezone=ZoneInfo("Asia/Tokyo"))])
            with connection.cursor() as cursor:
                cursor.execute(f"SELECT minute, timezone FROM {m.CrontabSchedule._meta.db_table}")
                stored = dict(cursor.fetchall())
            assert stored == {"0": "Europe/Paris", "5": "UTC", "7": "Asia/Tokyo", "9": "Asia/Tokyo"}
            assert objects.get(minute="0").timezone == ZoneInfo("Europe/Paris")
            # An upsert by the field's name, outside atomic.
            paris = objects.get(minute="0")
            paris.timezone = ZoneInfo("America/New_York")
            assert db.upsert(m.CrontabSchedule, [paris]).updated == 1
            assert objects.get(minute="0").timezone == ZoneInfo("America/New_York")
            # sync, first in full and then by its digests: the bad row is rejected by
            # itself, and the others are compared as the field writes them.
            bad_row = {"id": 999, "minute": "1", "timezone": "Nowhere/X", **every}
            for zone in ("Asia/Tokyo", "UTC"):
                paris.timezone = ZoneInfo(zone)
                source = [bad_row, *objects.exclude(pk=paris.pk), paris]
                report = db.sync(m.CrontabSchedule, source, on_error="isolate")
                assert (report.changed, report.unchanged, report.rejected) == (1, 3, 1)
                bad = report.rejections[0]
                assert (bad.row, bad.key, bad.column) == (1, 999, "timezone")
                assert objects.get(pk=paris.pk).timezone == ZoneInfo(zone)
        finally:
            with connection.schema_editor() as editor:
                editor.delete_model(m.CrontabSchedule)


def test_a_document_json_cannot_encode_rejects_its_row(alias: str, django_db_blocker: Any) -> None:
    # django-allauth keeps a provider's profile in SocialAccount.extra_data, a
    # JSONField: a value json cannot encode (a Decimal, with Django's default encoder)
    # stopped the whole call with a bare TypeError naming no row; Django's own save()
    # refuses it too. It is now the row's rejection, with its column.
    with django_db_blocker.unblock():
        db = bulkops.connect(connections[alias])
        shop_app.seed(db, 3)
        reviews = [
            shop_app.Review(product_id=1, rating=Decimal("4.5"), details={"ok": True}),
            shop_app.Review(product_id=2, rating=Decimal("3.0"), details={"p": Decimal("1.5")}),
        ]
        report = db.insert(shop_app.Review, reviews, on_error="isolate")
        assert (report.inserted, report.rejected) == (1, 1)
        bad = report.rejections[0]
        assert (bad.row, bad.column, bad.key) == (2, "details", reviews[1].id)
        assert "Decimal is not JSON serializable" in bad.reason
        refused = r"row 1, key .*, column 'details': keys must be str"
        with (
            pytest.raises(bulkops.errors.ConversionError, match=refused),
            transaction.atomic(using=alias),
        ):
            db.upsert(shop_app.Review, [{"id": reviews[0].id, "details": {1j: 0}}])
        got = shop_app.Review.objects.using(alias).get()
        assert (got.id, got.details) == (reviews[0].id, {"ok": True})


from django.contrib.sessions.base_session import AbstractBaseSession  # noqa: E402
from django.db import models  # noqa: E402


class Session(AbstractBaseSession):
    """django.contrib.sessions' Session (session_key, session_data, expire_date)."""

    class Meta:
        app_label = "shop"
        db_table = "shop_session"


class Visit(models.Model):
    ip = models.GenericIPAddressField()
    took = models.DurationField(null=True)
    at = models.DateTimeField(null=True)

    class Meta:
        app_label = "shop"


def test_values_are_stored_as_django_stores_them(alias: str, django_db_blocker: Any) -> None:
    # Where the column is text or an integer (SQLite), Django's lookups compare what
    # Django stores: a datetime as naive UTC text, a duration as microseconds, IPv6 in
    # its compressed lower-case form. bulkops stored "...12:00:00+00:00" (so
    # Session.objects.filter(expire_date=...) missed the row), refused every
    # DurationField value ("timedelta ... is not an integer"), and kept "2001:DB8::1".
    # A naive datetime is in the project's TIME_ZONE, as Django takes it (it warns).
    from zoneinfo import ZoneInfo

    from django.test import override_settings

    when = dt.datetime(2030, 1, 1, 12, 0, tzinfo=dt.UTC)
    with django_db_blocker.unblock(), override_settings(TIME_ZONE="Europe/Paris"):
        connection = connections[alias]
        with connection.schema_editor() as editor:
            editor.create_model(Session)
            editor.create_model(Visit)
        try:
            db = bulkops.connect(connection)
            sessions = [
                Session(session_key="a" * 32, session_data="x", expire_date=when),
                Session(
                    session_key="b" * 32,
                    session_data="x",
                    expire_date=when.astimezone(ZoneInfo("America/New_York")),
                ),
            ]
            with transaction.atomic(using=alias):
                assert db.insert(Session, sessions).inserted == 2
            objects = Session.objects.using(alias)
            objects.bulk_create([Session(session_key="c" * 32, session_data="x", expire_date=when)])
            # A DataFrame (the columnar path) with aware times of another zone, too.
            import pandas as pd

            frame = pd.DataFrame(
                {
                    "session_key": ["d" * 32],
                    "session_data": ["x"],
                    "expire_date": pd.to_datetime([when]).tz_convert("Asia/Tokyo"),
                }
            )
            assert db.insert(Session, frame).inserted == 1
            found = set(objects.filter(expire_date=when).values_list("session_key", flat=True))
            assert found == {"a" * 32, "b" * 32, "c" * 32, "d" * 32}
            assert not objects.filter(expire_date__lt=when).exists()

            def visits(tag: str) -> list[Any]:
                return [
                    Visit(ip="2001:DB8::1", took=dt.timedelta(days=1, microseconds=5),
                          at=dt.datetime(2024, 1, 1, 12, 0)),  # naive: Paris time
                    Visit(ip="10.0.0.1", took=dt.timedelta(seconds=-1), at=when),
                ]  # fmt: skip

            with pytest.warns(RuntimeWarning, match="naive datetime"):
                report = db.insert(
                    Visit, [*visits("bulkops"), Visit(ip="::1", took="one day")], on_error="isolate"
                )
            assert (report.inserted, report.rejected) == (2, 1)
            assert (report.rejections[0].row, report.rejections[0].column) == (3, "took")
            with pytest.warns(RuntimeWarning, match="naive datetime"):
                Visit.objects.using(alias).bulk_create(visits("django"))
            with connection.cursor() as cursor:
                cursor.execute(f"SELECT ip, took, at FROM {Visit._meta.db_table} ORDER BY id")
                stored = cursor.fetchall()
            assert stored[:2] == stored[2:]  # bulkops' rows, then Django's
            found_visits = Visit.objects.using(alias)
            assert found_visits.filter(ip="2001:db8::1").count() == 2
            assert (
                found_visits.filter(at=dt.datetime(2024, 1, 1, 11, 0, tzinfo=dt.UTC)).count() == 2
            )
            assert found_visits.filter(took=dt.timedelta(days=1, microseconds=5)).count() == 2
            # Written again unchanged: sync finds nothing to do.
            report = db.sync(Visit, list(found_visits.all()))
            assert (report.unchanged, report.changed) == (4, 0)
        finally:
            with connection.schema_editor() as editor:
                editor.delete_model(Session)
                editor.delete_model(Visit)


class Job(models.Model):
    name = models.CharField(max_length=20)
    tries = models.IntegerField(db_default=0)
    created = models.DateTimeField(db_default=models.functions.Now())

    class Meta:
        app_label = "shop"


def test_db_default_fields_are_left_to_the_database(alias: str, django_db_blocker: Any) -> None:
    # Django 5's db_default: an instance holds DatabaseDefault until saved, and
    # bulk_create writes DEFAULT. bulkops refused every instance ("fromisoformat:
    # argument must be str").
    with django_db_blocker.unblock():
        connection = connections[alias]
        with connection.schema_editor() as editor:
            editor.create_model(Job)
        try:
            db = bulkops.connect(connection)
            with transaction.atomic(using=alias):
                report = db.insert(Job, [Job(name="a"), Job(name="b", tries=3)])
            assert (report.inserted, report.rejected) == (2, 0)
            Job.objects.using(alias).bulk_create([Job(name="c")])
            jobs = {j.name: j for j in Job.objects.using(alias)}
            assert {n: j.tries for n, j in jobs.items()} == {"a": 0, "b": 3, "c": 0}
            assert all(j.created is not None for j in jobs.values())
            # An upsert leaves the database's value of a column left to it as it is.
            report = db.upsert(Job, [Job(pk=jobs["b"].pk, name="b2")])
            assert report.updated == 1
            assert Job.objects.using(alias).get(pk=jobs["b"].pk).tries == 3
        finally:
            with connection.schema_editor() as editor:
                editor.delete_model(Job)


class Ticket(models.Model):
    ref = models.UUIDField(default=uuid.uuid4, unique=True)
    title = models.CharField(max_length=40)
    state = models.CharField(max_length=10, default="open")
    meta = models.JSONField(default=dict)
    opened = models.DateTimeField(default=timezone.now)
    created = models.DateTimeField(auto_now_add=True)
    closed = models.DateTimeField(null=True, default=timezone.now)

    class Meta:
        app_label = "shop"


def test_an_inserted_mapping_takes_the_fields_python_defaults(
    alias: str, django_db_blocker: Any
) -> None:
    # A mapping that leaves out fields with a Python default (default=uuid.uuid4,
    # timezone.now, dict, "open") or auto_now_add is written as Model(**row) then
    # bulk_create would write it. Before, each such row was refused: the columns are
    # NOT NULL, and Django puts no default in the database. A None given stays NULL;
    # an upsert's mapping leaves what it omits as it is.
    with django_db_blocker.unblock():
        connection = connections[alias]
        with connection.schema_editor() as editor:
            editor.create_model(Ticket)
        try:
            db = bulkops.connect(connection)
            before = timezone.now()
            report = db.insert(
                Ticket, [{"title": "a"}, {"title": "b", "state": "held", "closed": None}]
            )
            assert (report.inserted, report.rejected) == (2, 0)
            Ticket.objects.using(alias).bulk_create([Ticket(title="c")])
            tickets = {t.title: t for t in Ticket.objects.using(alias)}
            assert {n: t.state for n, t in tickets.items()} == {
                "a": "open",
                "b": "held",
                "c": "open",
            }
            assert {n: t.meta for n, t in tickets.items()} == {"a": {}, "b": {}, "c": {}}
            assert len({t.ref for t in tickets.values()}) == 3
            for t in tickets.values():
                assert isinstance(t.ref, uuid.UUID)
                assert t.opened >= before and t.created >= before
            assert tickets["a"].closed is not None and tickets["b"].closed is None
            report = db.upsert(Ticket, [{"ref": tickets["b"].ref, "title": "b2"}], key="ref")
            assert report.updated == 1
            again = Ticket.objects.using(alias).get(ref=tickets["b"].ref)
            assert (again.title, again.state, again.closed) == ("b2", "held", None)
        finally:
            with connection.schema_editor() as editor:
                editor.delete_model(Ticket)
