"""The admin of impex, a module per sub-domain; Django's autodiscover imports this package, which registers them all.

jobs (import jobs, their files, chunks, events, row errors; the upload page and the link to it), connections
(connections and their scans, inbox files, API tokens), descriptors (descriptors, their columns, import and export
groups), exports (export runs and the files sent), webhooks (subscriptions and deliveries), problems (the Problems
list); export_views holds the "Export" pages the other apps' admins use too (DescriptorExportMixin).
"""

from impex.admin import connections, descriptors, exports, jobs, problems, webhooks  # noqa: F401 (registers them)
