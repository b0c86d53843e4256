# The firmware version: the one place it is written (HELLO carries it; the console banner shows it).
VERSION = "0.1.0"
