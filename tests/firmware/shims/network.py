# Test double of the network module: a station that is up at once on 127.0.0.1/8.
STA_IF = 0
AP_IF = 1
state = {"up": True, "connects": 0}


class WLAN:
    def __init__(self, i=STA_IF):
        pass

    def active(self, on=None):
        return True

    def connect(self, ssid, password):
        state["connects"] += 1

    def disconnect(self):
        pass

    def isconnected(self):
        return state["up"]

    def ifconfig(self):
        return ("127.0.0.1", "255.0.0.0", "127.0.0.1", "127.0.0.1")
