"""The errors of an over-the-air update: a message meant for the operator, and the HTTP status
the API answers it with (400: the request or the package is wrong; 409: it conflicts with the
ward's state, e.g. a downgrade or a terminal already being updated)."""


class OtaError(Exception):
    status = 400


class OtaConflict(OtaError):
    status = 409
