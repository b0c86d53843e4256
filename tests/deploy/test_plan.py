"""`wardcall fleet deploy` plans (fleet.load_plan): CSV or TOML, and a clear error naming the
line for every bad plan, never a traceback."""
import pytest

from wardcall.deploy.errors import DeployError
from wardcall.deploy.fleet import load_plan


def test_csv_and_toml_plans(tmp_path):
    csv = tmp_path / "plan.csv"
    csv.write_text("# ward 3\nport,device,board\n/dev/ttyUSB0,bed-101-1,esp32\n/dev/ttyUSB1, bed-101-2 ,\n")
    assert [(e["port"], e["device"], e["board"]) for e in load_plan(csv)] == [
        ("/dev/ttyUSB0", "bed-101-1", "esp32"), ("/dev/ttyUSB1", "bed-101-2", "")]
    toml = tmp_path / "plan.toml"
    toml.write_text('[[board]]\nport = "/dev/ttyUSB0"\ndevice = "bed-101-1"\n\n'
                    '[[board]]\nport = "socket://127.0.0.1:7400"\ndevice = "bed-101-2"\nboard = "emulator"\n')
    assert [(e["port"], e["device"], e.get("board")) for e in load_plan(toml)] == [
        ("/dev/ttyUSB0", "bed-101-1", None), ("socket://127.0.0.1:7400", "bed-101-2", "emulator")]


@pytest.mark.parametrize("name, text, says", [
    ("plan.csv", "device,port\n", "lists no boards"),
    ("plan.csv", "port,bed\n/dev/ttyUSB0,bed-1\n", "the first line must be the header port,device[,board]"),
    ("plan.csv", "port,device\n/dev/ttyUSB0,bed-1\n/dev/ttyUSB0,bed-2\n",
     "port /dev/ttyUSB0 is listed twice (plan.csv row 2 and plan.csv row 3)"),
    ("plan.csv", "port,device\n/dev/ttyUSB0,\n", "plan.csv row 2 has no device"),
    ("plan.toml", "[[board]]\nport = \"/dev/ttyUSB0\"\n", "[[board]] #1 has no device"),
    ("plan.toml", "[[board]\n", "is not valid TOML"),
    ("plan.toml", "board = \"/dev/ttyUSB0\"\n", "use [[board]] tables with port and device"),
    ("plan.toml", "board = [\"/dev/ttyUSB0\"]\n", "use [[board]] tables with port and device"),
])
def test_bad_plans_say_what_is_wrong(tmp_path, name, text, says):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(DeployError) as e:
        load_plan(path)
    assert e.value.code == "plan" and says in str(e.value)


def test_a_missing_plan(tmp_path):
    with pytest.raises(DeployError) as e:
        load_plan(tmp_path / "nope.csv")
    assert e.value.code == "plan" and "cannot read the plan" in str(e.value)
