"""Hospital integration (docs/INTEGRATION.md): IHE PCD ACM alerts (PCD-04 out, PCD-05 back) and
HL7 ADT in over MLLP, ESPA 4.4.4 paging over a serial line.

  config.py    the ward TOML's [integrations.*] tables
  queue.py     the on-disk outbound queue (SQLite, its own writer thread)
  hl7msg.py    HL7 v2.6 message building and reading shared by both HL7 interfaces
  mllp.py      an MLLP client that keeps one connection, and the listener for inbound messages
  acm.py       the Alert Reporter: call lifecycle → ORU^R40, ACK, keep-alive; ORA^R41 status back
  adt.py       ADT A01/A02/A03/A08 → the patient on each bed
  patients.py  the patient on each bed, kept beside the record
  espa.py      ESPA 4.4.4 control station over pyserial
  service.py   Integrations: what the hub and the server call
"""
