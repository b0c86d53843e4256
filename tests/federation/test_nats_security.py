"""The hub's links secured as on a hospital network (natsconf's NatsTls and NatsUser, real
nats-server processes): the hub speaks TLS only and every connection logs in; a ward's leaf node
with its login brings the ward's calls to the hospital console, one with a wrong password is
refused and brings nothing; a client in clear, or without a login, is refused. Each ward's leaf
login lands in its own account: it reaches nothing of another ward's, nor the hub's JetStream,
while the hospital still sees every ward and a team's accept still reaches it. A ward's leaf node
that listens on the ward network takes only clients with a certificate from the ward CA: the
ward host and its standby."""
from __future__ import annotations

import json
import ssl
import urllib.request

import nats
import nats.errors
import pytest

from wardcall.federation.natsconf import NatsTls, NatsUser
from wardcall.protocol import wardproto
from wardcall.devicekeys import write_private
from tests.federation.conftest import SUPERVISOR, TEAM_USER, hospital_events
from tests.federation.test_standby import start_standby
from tests.federation.test_hospital import _login, _session, _state
from tests.fixtures.host import LOOPBACK
from tests.support.testca import shared_ca, shared_host_files
from tests.support.waiting import async_wait_until, wait_until

WARDS = {"a": "Ward A", "b": "Ward B"}


def hub_leaves(hub) -> list[dict]:
    with urllib.request.urlopen(f"http://{LOOPBACK}:{hub.node.monitor_port}/leafz", timeout=2) as reply:
        return json.loads(reply.read()).get("leafs", [])


async def test_the_hub_takes_only_tls_and_logins_and_a_wrong_leaf_password_brings_nothing(
        nats_hospital, fed_ward, ward_server_factory, hospital_console, tmp_path):
    ca, _ = shared_ca()
    cert, key = shared_host_files()
    tls = NatsTls(ca, cert, key)
    console_user, ward_a, ward_b = NatsUser.new("hospital"), NatsUser.for_ward("a"), NatsUser.for_ward("b")
    hospital = nats_hospital
    hub = hospital.hub(tls=tls, clients=(console_user,), leaves=(ward_a, ward_b))
    hospital.leaf("a", hub_tls=tls, hub_user=ward_a)
    hospital.leaf("b", hub_tls=tls, hub_user=NatsUser("ward-b", "not-" + ward_b.password, "b"))   # a wrong password
    wait_until(lambda: len(hub_leaves(hub)) == 1, 15, "ward a's leaf node logged in on the hub")
    assert "Authorization Violation" in (hospital.root / "leaf-b.log").read_text() or \
        "authorization" in (hospital.root / "hub-1.log").read_text().lower()

    wards = {w: fed_ward(hospital, w, terminals=1) for w in WARDS}
    for ward in wards.values():
        ward_server_factory(ward)
    password_file = tmp_path / "hub-password"
    write_private(password_file, console_user.password + "\n")
    hub_url = f"tls://{LOOPBACK}:{hub.node.client_port}"
    console = hospital_console(hub_url, WARDS, hospital_keys=f'hub_ca = "{ca}"\nhub_user = "hospital"\n'
                                                             f'hub_password_file = "{password_file}"')
    beds = {w: ward.terminal(0) for w, ward in wards.items()}
    for bed in beds.values():
        await bed.connect()
    try:
        call_a = await beds["a"].place_call(wardproto.PATIENT)
        call_b = await beds["b"].place_call(wardproto.PATIENT)
        async with _session() as sup:
            await _login(sup, console.url, SUPERVISOR)

            async def ward_a_on_the_board():
                state = await _state(sup, console.url)
                return state if any(c["call_id"] == call_a for w in state["wards"] if w["id"] == "a" for c in w["calls"]) else None
            state = await async_wait_until(ward_a_on_the_board, 15, "ward a's call on the hospital console")
        # ward b's leaf node is not let in: its call stays on its ward (it keeps working alone)
        assert not [c for w in state["wards"] if w["id"] == "b" for c in w["calls"]], state
        assert call_b
    finally:
        for bed in beds.values():
            await bed.close()

    # a client in clear, or over TLS without a login or with a wrong one, is refused
    plain = f"nats://{LOOPBACK}:{hub.node.client_port}"
    trusted = ssl.create_default_context(cafile=str(ca))
    for kw in ({"servers": [plain]}, {"servers": [hub_url], "tls": trusted},
               {"servers": [hub_url], "tls": trusted, "user": "hospital", "password": "guess"}):
        with pytest.raises((nats.errors.Error, OSError, ssl.SSLError)):
            nc = await nats.connect(connect_timeout=2, max_reconnect_attempts=0, allow_reconnect=False, **kw)
            await nc.close()
    nc = await nats.connect(servers=[hub_url], tls=trusted, user="hospital", password=console_user.password,
                            connect_timeout=2, allow_reconnect=False)
    await nc.close()


def test_the_hub_cluster_routes_are_mutual_tls_with_a_login(tmp_path):
    # three hub nodes whose routes verify each other against the CA (wardcall's host
    # certificates allow client authentication for this) and log in; ready means routed: a
    # JetStream cluster reports healthy only once its nodes reach each other
    from wardcall.federation.natsconf import NatsServer, free_port, hub_cluster
    ca, _ = shared_ca()
    cert, key = shared_host_files()
    specs = [(LOOPBACK, free_port(), free_port(), free_port(), free_port()) for _ in range(3)]
    nodes = hub_cluster(tmp_path, specs, tls=NatsTls(ca, cert, key))
    assert all("ca_file" in n.conf() and "route:" in n.conf() for n in nodes)
    servers = [NatsServer(n, tmp_path / f"{n.name}.conf", tmp_path / f"{n.name}.log").launch() for n in nodes]
    try:
        for server in servers:
            server.wait_ready(30)
        def routes(node) -> int:
            with urllib.request.urlopen(f"http://{LOOPBACK}:{node.monitor_port}/routez", timeout=2) as reply:
                return json.loads(reply.read())["num_routes"]
        # healthy needs a quorum (2 of 3): the third route may come a moment later
        for node in nodes:
            wait_until(lambda: routes(node) == 2, 15, f"{node.name} routed to both other nodes")
    finally:
        for server in servers:
            server.stop()


def _other_ca_client(tmp_path, name: str) -> tuple:
    """A client certificate from a CA that is not the ward's (an EC key: quick to make)."""
    import datetime
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True).sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / "other.pem", tmp_path / "other-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    write_private(key_path, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                              serialization.NoEncryption()).decode())
    return cert_path, key_path


async def test_a_leaf_node_on_the_ward_network_takes_only_the_ward_hosts_certificates(
        nats_hospital, fed_ward, ward_server_factory, tmp_path):
    # the leaf node listens with mutual TLS (LeafNode.client_tls, the ward CA): the ward host
    # publishes to it over tls:// with its host certificate, and the standby on the other PC
    # follows it straight over tls:// (standby_of); a client in clear, one without a
    # certificate and one with a certificate from another CA are refused
    from wardcall.config import DEFAULT_TLS_NAME
    ca, _ = shared_ca()
    cert, key = shared_host_files()
    hospital = nats_hospital
    hospital.hub()
    leaf = hospital.leaf("a", client_tls=NatsTls(ca, cert, key))
    assert leaf.url.startswith("tls://") and "verify: true" in leaf.node.conf()
    ward = fed_ward(hospital, "a", terminals=1)
    rig = await start_standby(hospital, ward, "a", ward_server_factory)
    bed = ward.terminal(0)
    try:
        await bed.connect()
        call = await bed.place_call(wardproto.PATIENT)
        beats = lambda: rig.status().get("beats", {}).get("direct", 0)
        await async_wait_until(lambda: beats() > 0 and rig.open_calls() == [["bed-101-1", call, "placed"]], 15,
                               "the standby following the primary's leaf node straight, over TLS")

        async def on_the_hub() -> bool:
            events = await hospital_events(hospital.hub_url, 1, timeout=1)
            return any(e.get("kind") == "call_placed" and e["call"]["call_id"] == call for e in events)
        await async_wait_until(on_the_hub, 15, "the call, published over TLS, on the hospital stream")
    finally:
        await bed.close()
        rig.close()

    address = leaf.url.removeprefix("tls://")
    trusted = ssl.create_default_context(cafile=str(ca))
    stranger = ssl.create_default_context(cafile=str(ca))
    stranger.load_cert_chain(*map(str, _other_ca_client(tmp_path, "intruder")))
    for kw in ({"servers": [f"nats://{address}"]}, {"servers": [leaf.url], "tls": trusted},
               {"servers": [leaf.url], "tls": stranger}):
        with pytest.raises((nats.errors.Error, OSError, ssl.SSLError)):
            nc = await nats.connect(connect_timeout=2, max_reconnect_attempts=0, allow_reconnect=False,
                                    tls_hostname=DEFAULT_TLS_NAME, **kw)
            await nc.flush(2)        # a refused certificate may show only at the first round trip
            await nc.close()
    holder = ssl.create_default_context(cafile=str(ca))
    holder.load_cert_chain(str(cert), str(key))
    nc = await nats.connect(servers=[leaf.url], tls=holder, tls_hostname=DEFAULT_TLS_NAME, connect_timeout=2,
                            allow_reconnect=False)
    await nc.flush(2)
    await nc.close()


async def test_a_wards_leaf_login_reaches_only_its_own_ward(nats_hospital, fed_ward, ward_server_factory,
                                                            hospital_console, tmp_path):
    # each ward's leaf login lands in its own account on the hub (NatsUser.for_ward): a client on
    # ward b's leaf node (an intruder on ward b's PC) cannot accept ward a's calls, read ward a's
    # stream, nor touch the hub's JetStream; the hospital console still sees ward a's calls, a
    # team's accept still reaches ward a's terminal, and ward a's standby still follows ward a
    # through the hub (its own login, in ward a's account)
    ca, _ = shared_ca()
    cert, key = shared_host_files()
    tls = NatsTls(ca, cert, key)
    console_user = NatsUser.new("hospital")
    ward_a, ward_b, standby_a = NatsUser.for_ward("a"), NatsUser.for_ward("b"), NatsUser.for_ward("a", standby=True)
    hospital = nats_hospital
    hub = hospital.hub(tls=tls, clients=(console_user,), leaves=(ward_a, ward_b, standby_a))
    hospital.leaf("a", hub_tls=tls, hub_user=ward_a)
    leaf_b = hospital.leaf("b", hub_tls=tls, hub_user=ward_b)
    wait_until(lambda: len(hub_leaves(hub)) == 2, 15, "both wards' leaf nodes logged in on the hub")
    wards = {w: fed_ward(hospital, w, terminals=1) for w in WARDS}
    login = dict(servers=[f"tls://{LOOPBACK}:{hub.node.client_port}"], tls=ssl.create_default_context(cafile=str(ca)),
                 user=console_user.user, password=console_user.password)
    rig = await start_standby(hospital, wards["a"], "a", ward_server_factory, hub_user=standby_a, hub_login=login)
    ward_server_factory(wards["b"])
    password_file = tmp_path / "hub-password"
    write_private(password_file, console_user.password + "\n")
    console = hospital_console(f"tls://{LOOPBACK}:{hub.node.client_port}", WARDS,
                               hospital_keys=f'hub_ca = "{ca}"\nhub_user = "hospital"\nhub_password_file = "{password_file}"')
    bed = wards["a"].terminal(0)
    intruder = None
    try:
        await bed.connect()
        code = await bed.place_call(wardproto.CODE_BLUE)
        async with _session() as team:
            await _login(team, console.url, TEAM_USER)

            async def on_the_board():
                state = await _state(team, console.url)
                return next((c for w in state["wards"] if w["id"] == "a" for c in w["calls"] if c["call_id"] == code), None)
            call = await async_wait_until(on_the_board, 15, "ward a's code blue on the hospital console")
            hub_beats = lambda: rig.status().get("beats", {}).get("hub", 0)
            await async_wait_until(lambda: hub_beats() > 0, 15, "ward a's standby following it through the hub")

            # an intruder on ward b's PC, on its leaf node: nothing of ward a's answers
            intruder = await nats.connect(leaf_b.url, connect_timeout=2, allow_reconnect=False)
            request = json.dumps({"call_id": call["id"], "user": "intruder", "team": "rrt"}).encode()
            for subject, data in ((f"wardcall.a.rpc.accept", request), ("$JS.ward-a.API.STREAM.INFO.WARD_a", b""),
                                  ("$JS.ward-a.API.STREAM.DELETE.WARD_a", b"")):
                with pytest.raises((nats.errors.NoRespondersError, nats.errors.TimeoutError)):
                    await intruder.request(subject, data, timeout=2)
            try:        # the hub's JetStream is not for a ward's account: no answer, or an error
                reply = json.loads((await intruder.request("$JS.hub.API.STREAM.DELETE.HOSPITAL", b"", timeout=2)).data)
                assert reply.get("error"), reply
            except (nats.errors.NoRespondersError, nats.errors.TimeoutError):
                pass
            assert call["state"] == "placed"

            # the team's accept crosses from the hospital's account to ward a's
            async with team.post(f"{console.url}/api/calls/a/{call['id']}/accept") as answer:
                assert answer.status == 200, await answer.text()
            await bed.wait_call_state(code, wardproto.ST_ACKNOWLEDGED, timeout=5)
        events = await hospital_stream_events(hub, console_user, ca)
        assert any(e.get("kind") == "call_acknowledged" and e["call"]["call_id"] == code for e in events), events
    finally:
        if intruder is not None:
            await intruder.close()
        await bed.close()
        rig.close()


async def hospital_stream_events(hub, user: NatsUser, ca) -> list[dict]:
    """The hospital stream's events, read as the console reads them (its login, over TLS)."""
    trusted = ssl.create_default_context(cafile=str(ca))
    nc = await nats.connect(servers=[f"tls://{LOOPBACK}:{hub.node.client_port}"], tls=trusted, user=user.user,
                            password=user.password, connect_timeout=2, allow_reconnect=False)
    try:
        js = nc.jetstream()
        count = (await js.stream_info("HOSPITAL")).state.messages
        sub = await js.subscribe("wardcall.>", stream="HOSPITAL", ordered_consumer=True)
        return [json.loads((await sub.next_msg(5)).data) for _ in range(count)]
    finally:
        await nc.close()
