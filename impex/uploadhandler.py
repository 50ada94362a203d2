"""Stop a browser upload at IMPEX_MAX_UPLOAD_BYTES while it streams in, before more of it is stored."""

from django.core.files.uploadhandler import FileUploadHandler, StopUpload

from impex.services.uploads import upload_limit, upload_too_big

# What a form's other fields (the CSRF token, a group, a check box) and the multipart framing can take of a body.
FORM_FIELDS_BYTES = 1024**2


class UploadLimitHandler(FileUploadHandler):
    """The first upload handler: passes each chunk on to the next, and stops the upload once its files pass the limit.

    A body declared bigger than the limit and a form's other fields is stopped before any of its file is stored;
    otherwise the file is stopped at the limit. The parts stored so far are deleted (the parser closes the handlers'
    files), the rest of the body is left unread, and upload_stopped() tells the page why its file is missing.
    """

    def handle_raw_input(self, input_data, META, content_length, boundary, encoding=None):
        self.body_length = content_length
        self.received = 0

    def new_file(self, field_name, file_name, *args, **kwargs):
        super().new_file(field_name, file_name, *args, **kwargs)
        if self.body_length > upload_limit() + FORM_FIELDS_BYTES:
            self._stop()

    def receive_data_chunk(self, raw_data, start):
        self.received += len(raw_data)
        if self.received > upload_limit():
            self._stop()
        return raw_data

    def file_complete(self, file_size):
        return None

    def _stop(self):
        self.request.upload_stopped = upload_too_big(name=self.file_name, size=None)
        raise StopUpload(connection_reset=True)


def upload_stopped(request) -> str:
    """Return why the request's upload was stopped while it streamed in, or "" if it was not."""
    return getattr(request, "upload_stopped", "")
