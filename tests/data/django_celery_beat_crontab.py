"""An excerpt of django-celery-beat 2.9.0's CrontabSchedule (django_celery_beat/models.py;
https://github.com/celery/django-celery-beat, BSD-3-Clause, Copyright (c) 2015-2016 Ask
Solem) and of the field its timezone column is, django-timezone-field 7.2.2's
TimeZoneField (timezone_field/fields.py, utils.py and backends/zoneinfo.py;
https://github.com/mfogel/django-timezone-field, BSD-2-Clause, Copyright (c) 2014 Mike
Fogel). The field's choices, form and pytz handling, the model's validators, verbose
names and methods are left out; the value conversions (get_prep_value, to_python,
from_db_value) and the columns are as published. Import once Django is configured."""

import zoneinfo

from django.core.exceptions import ValidationError
from django.db import models
from django.db.models.query_utils import DeferredAttribute
from django.utils.encoding import force_str


class TimeZoneNotFoundError(Exception):
    pass


class ZoneInfoBackend:
    def is_tzobj(self, value):
        return isinstance(value, zoneinfo.ZoneInfo)

    def to_tzobj(self, tzstr):
        if tzstr in (None, ""):
            raise TimeZoneNotFoundError
        try:
            return zoneinfo.ZoneInfo(tzstr)
        except zoneinfo.ZoneInfoNotFoundError as err:
            raise TimeZoneNotFoundError from err


class AutoDeserializedAttribute(DeferredAttribute):
    def __set__(self, instance, value):
        value = self.field.to_python(value)
        instance.__dict__[self.field.attname] = value


class TimeZoneField(models.Field):
    descriptor_class = AutoDeserializedAttribute

    description = "A timezone object"

    default_max_length = 63

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("max_length", self.default_max_length)
        self.use_pytz = kwargs.pop("use_pytz", None)
        self.tz_backend = ZoneInfoBackend()
        super().__init__(*args, **kwargs)

    def get_internal_type(self):
        return "CharField"

    def get_default(self):
        # allow defaults to be still specified as strings. Allows for easy
        # serialization into migration files
        value = super().get_default()
        return self._get_python_and_db_repr(value)[0]

    def from_db_value(self, value, *_args):
        "Convert to pytz timezone object"
        return self._get_python_and_db_repr(value)[0]

    def to_python(self, value):
        "Convert to pytz timezone object"
        return self._get_python_and_db_repr(value)[0]

    def get_prep_value(self, value):
        "Convert to string describing a valid pytz timezone object"
        return self._get_python_and_db_repr(value)[1]

    def _get_python_and_db_repr(self, value):
        "Returns a tuple of (python representation, db representation)"
        if value is None or value == "":
            return (None, "")
        if self.tz_backend.is_tzobj(value):
            return (value, str(value))
        try:
            return (self.tz_backend.to_tzobj(force_str(value)), force_str(value))
        except TimeZoneNotFoundError as err:
            raise ValidationError(f"Invalid timezone '{value}'") from err


def crontab_schedule_celery_timezone():
    return "UTC"  # (CELERY_TIMEZONE when the project sets one)


class CrontabSchedule(models.Model):
    minute = models.CharField(max_length=60 * 4, default="*")
    hour = models.CharField(max_length=24 * 4, default="*")
    day_of_month = models.CharField(max_length=31 * 4, default="*")
    month_of_year = models.CharField(max_length=64, default="*")
    day_of_week = models.CharField(max_length=64, default="*")

    timezone = TimeZoneField(
        default=crontab_schedule_celery_timezone,
        use_pytz=False,
    )

    class Meta:
        app_label = "django_celery_beat"
        ordering = ["month_of_year", "day_of_month", "day_of_week", "hour", "minute", "timezone"]
