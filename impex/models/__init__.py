"""The models of impex, a module per sub-domain; every name is imported from here (`from impex.models import X`).

From the bottom up: validation (the checks models run on their fields: cron, folder locations, export file names),
work (LeasedWork, the abstract base of leased and retried work the other apps' queues build on, WorkPass and
ClusterBeat),
connections (connections, their engine state, API tokens), descriptors (descriptors, their columns, groups),
inbox (the files the scans find), jobs (import jobs, files, chunks, events, row errors and the engine's ledgers),
exports (export runs and the files sent), webhooks (subscriptions, deliveries, attempts), problems.
Each sub-module imports only those before it; the models keep app_label impex, so Django sees the same models.
"""

from impex.models.connections import ApiToken, Connection, ConnectionState, ScanLoop
from impex.models.descriptors import DataDescriptor, DataGroup, DescriptorColumn
from impex.models.exports import ExportRun, ExportRunEvent, ExportState, FullSync, SentFile
from impex.models.inbox import InboxEvent, InboxFile
from impex.models.jobs import (
    DeferredRow,
    FileDuplicate,
    FileKey,
    ImportChunk,
    ImportedFileName,
    ImportEvent,
    ImportFile,
    ImportJob,
    RowError,
)
from impex.models.problems import Problem
from impex.models.validation import (
    EXPORT_NAME_DEFAULT,
    EXPORT_NAME_FIELDS,
    EXPORT_NAME_MAX,
    EXPORT_NAME_UNIQUE,
    LOCATION_RULES,
    LOCATION_SHAPES,
    LocationFieldsMixin,
    cron_errors,
    export_name_errors,
    export_name_render,
    location_errors,
)
from impex.models.webhooks import WebhookAttempt, WebhookDelivery, WebhookSubscription
from impex.models.work import ClusterBeat, LeasedWork, WorkPass

__all__ = [
    "EXPORT_NAME_DEFAULT",
    "EXPORT_NAME_FIELDS",
    "EXPORT_NAME_MAX",
    "EXPORT_NAME_UNIQUE",
    "LOCATION_RULES",
    "LOCATION_SHAPES",
    "ApiToken",
    "ClusterBeat",
    "Connection",
    "ConnectionState",
    "DataDescriptor",
    "DataGroup",
    "DeferredRow",
    "DescriptorColumn",
    "ExportRun",
    "ExportRunEvent",
    "ExportState",
    "FileDuplicate",
    "FileKey",
    "FullSync",
    "ImportChunk",
    "ImportEvent",
    "ImportFile",
    "ImportJob",
    "ImportedFileName",
    "InboxEvent",
    "InboxFile",
    "LeasedWork",
    "LocationFieldsMixin",
    "Problem",
    "RowError",
    "ScanLoop",
    "SentFile",
    "WebhookAttempt",
    "WebhookDelivery",
    "WebhookSubscription",
    "WorkPass",
    "cron_errors",
    "export_name_errors",
    "export_name_render",
    "location_errors",
]
