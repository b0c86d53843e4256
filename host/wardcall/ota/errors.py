"""The one error of an over-the-air update: a message meant for the operator."""


class OtaError(Exception):
    pass
