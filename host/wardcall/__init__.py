"""wardcall host: the nurse-station server of the wardcall nurse call system."""

__version__ = "0.1.0"
