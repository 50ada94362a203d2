"""Serializer fields the apps' endpoints share."""

import zoneinfo

from rest_framework import serializers


class ConnectionDateTimeField(serializers.DateTimeField):
    """A date-time; one without an offset is read in the connection's time zone, as its files are."""

    def default_timezone(self):
        connection = self.context.get("connection")
        if connection is not None and connection.timezone:
            return zoneinfo.ZoneInfo(connection.timezone)
        return super().default_timezone()
