# Small helpers for state kept on the flash filesystem: atomic writes (temporary file, then
# rename) and reads that survive missing or corrupt files. Paths are relative to the working
# directory, which is the flash root on the board.
import os
import json

from log import log


def write_atomic(path, data):
    """Write data (str or bytes) to path so that a power cut leaves the old or the new
    content, never a mix. Raises OSError if the flash refuses."""
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    try:
        os.rename(tmp, path)
    except OSError:
        # a filesystem that will not rename over an existing file (FAT): remove, then rename
        try:
            os.remove(path)
        except OSError:
            pass
        os.rename(tmp, path)


def read_json(path, default):
    """The JSON value stored in path, or default if the file is missing or unreadable."""
    try:
        with open(path) as f:
            return json.load(f)
    except OSError:
        return default
    except ValueError as e:
        log("flash", "%s is corrupt (%s); starting from empty" % (path, e))
        return default


def write_json(path, value):
    write_atomic(path, json.dumps(value))


def exists(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False


BOOT_FILE = "bootcount"


def next_boot():
    """Increment and return the boot counter kept on flash (call ids embed it)."""
    n = read_json(BOOT_FILE, 0)
    if not isinstance(n, int) or n < 0:
        n = 0
    n = (n + 1) & 0xFFFF
    if n == 0:
        n = 1
    try:
        write_json(BOOT_FILE, n)
    except OSError as e:
        log("flash", "cannot store the boot counter: %r" % (e,))
    return n
