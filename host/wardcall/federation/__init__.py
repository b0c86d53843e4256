"""Hospital scale: wards federated over NATS JetStream (docs/FEDERATION.md).

Each ward host publishes its events to its own stream, and its current state to its own key-value
bucket, on the ward's NATS leaf node (its own JetStream domain); the hospital hub (a nats-server
cluster) sources every ward's stream into one stream, from which the hospital console
(`wardcall hospital`) builds its board, its emergency list, its reports and the cross-ward teams'
pocket consoles. A ward needs none of it to work: with no [federation] section nothing changes.

Modules: settings.py (the ward's [federation] section), subjects.py (names of subjects, streams,
buckets, keys), natsconf.py (nats-server configurations), publisher.py (the ward's publisher),
responder.py (what the ward answers the hospital: a team's accept), hospital_config.py,
hospital.py (the hospital service and its web console, hospital_web/).
"""
