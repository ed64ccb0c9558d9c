"""The installer commands' argparse tree, added to ``safehome`` by :func:`register`.

Only argparse here: the command bodies (httpx, rich, Pillow) are imported when a command
runs, so ``safehome --help`` and the other sub-commands stay quick to start.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from gateway.installer.exits import EXIT_CODES
from gateway.registry_rules import IMPORT_KINDS, LOCATION_KINDS, SITE_KINDS

COMMAND_NAMES: set[str] = set()  # every name given to _run (each a key of COMMANDS)


def _run(name: str) -> Callable[[argparse.Namespace], int]:
    """A command function that imports :mod:`gateway.installer.commands` when called
    (``name`` is a key of its ``COMMANDS`` table)."""

    def run(args: argparse.Namespace) -> int:
        from gateway.installer import commands  # noqa: PLC0415 (httpx, rich: on demand)

        return commands.run(name, args)

    COMMAND_NAMES.add(name)
    return run


def _emulate(args: argparse.Namespace) -> int:
    """``device emulate``: the device side only (MQTT), in :mod:`devices.emulator`."""
    from devices import emulator  # noqa: PLC0415 (the MQTT side, on demand)

    return emulator.main(args)


def _common() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--gateway", metavar="URL",
        help="gateway API address (default: $SAFEHOME_GATEWAY_URL, then the config file)",
    )  # fmt: skip
    common.add_argument("--json", action="store_true", help="print JSON (for scripts)")
    return common


def _sited() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--site", help="site id (default: the site of your installer account)")
    return p


def _group(sub: Any, name: str, help_: str, examples: str) -> Any:
    parser = sub.add_parser(
        name, help=help_, description=help_, epilog=f"examples:\n{examples}\n\n{EXIT_CODES}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    return parser.add_subparsers(dest=f"{name}_cmd", required=True, metavar="ACTION")


def _leaf(group: Any, name: str, help_: str, func: str, parents: list[Any]) -> Any:
    p = group.add_parser(
        name, help=help_, description=help_, parents=parents, epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    p.set_defaults(func=_run(func))
    return p


def _config_out(p: Any) -> None:
    p.add_argument("--qr-out", metavar="FILE.png", help="also save the configuration as a QR PNG")
    p.add_argument("--config-out", metavar="FILE.json", help="also save it as JSON (mode 0600)")
    p.add_argument("--no-qr", action="store_true", help="do not draw the QR code in the terminal")


def register(sub: Any, site_group: Any) -> None:
    """Add the installer commands to ``safehome``'s sub-commands; ``site_group`` is the
    existing ``safehome site`` group (``site apply`` stays there)."""
    common, sited = _common(), _sited()
    both = [common, sited]

    def top(name: str, help_: str, func: str, examples: str) -> Any:
        p = sub.add_parser(
            name, help=help_, description=help_, parents=[common],
            epilog=f"examples:\n{examples}\n\n{EXIT_CODES}",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )  # fmt: skip
        p.set_defaults(func=_run(func))
        return p

    # -- sign-in -------------------------------------------------------------------------
    login = top("login", "sign in to the gateway and cache the token (mode 0600)", "login",
                "  safehome login --gateway http://192.168.1.10:8080 --user inst-li\n"
                "  echo \"$PW\" | safehome login --user inst-li --password-stdin")  # fmt: skip
    login.add_argument("--user", help="user name (prompted when omitted)")
    login.add_argument(
        "--password-stdin", action="store_true", help="read the password from standard input"
    )
    top("logout", "forget the cached token", "logout", "  safehome logout")
    top("whoami", "who is signed in, to which gateway, until when", "whoami",
        "  safehome whoami --json")  # fmt: skip

    # -- registry --------------------------------------------------------------------------
    p = _leaf(site_group, "list", "sites you may see", "site_list", [common])
    p = _leaf(site_group, "show", "one site with its counts", "site_show", [common])
    p.add_argument("site_id")
    p = _leaf(site_group, "create", "create a site", "site_create", [common])
    p.add_argument("site_id")
    p.add_argument("--name", required=True)
    p.add_argument("--kind", required=True, choices=SITE_KINDS)
    p.add_argument("--utc-offset", type=int, metavar="SECONDS", help="e.g. 28800 for UTC+8")
    p = _leaf(site_group, "edit", "change a site's name or UTC offset", "site_edit", [common])
    p.add_argument("site_id")
    p.add_argument("--name")
    p.add_argument("--utc-offset", type=int, metavar="SECONDS")

    loc = _group(sub, "location", "rooms (nursing home) and homes (home-care beds)",
                 "  safehome location create R101 --kind room --label 'Room 101'\n"
                 "  safehome location list --json")  # fmt: skip
    _leaf(loc, "list", "locations of the site", "location_list", both)
    p = _leaf(loc, "show", "one location", "location_show", [common])
    p.add_argument("location_id")
    p = _leaf(loc, "create", "create a location", "location_create", both)
    p.add_argument("location_id")
    p.add_argument("--kind", required=True, choices=LOCATION_KINDS)
    p.add_argument("--label", required=True, help="e.g. 'Room 101' (no names)")
    p.add_argument("--address", help="street address (home-care beds)")
    p = _leaf(loc, "edit", "change a location", "location_edit", [common])
    p.add_argument("location_id")
    p.add_argument("--label")
    p.add_argument("--address")

    bed = _group(sub, "bed", "beds and their codes (一床一码)",
                 "  safehome bed create BED-0101 --location R101\n"
                 "  safehome bed show BED-0101")  # fmt: skip
    _leaf(bed, "list", "beds of the site", "bed_list", both)
    p = _leaf(bed, "show", "a bed, its location, devices and resident code", "bed_show", [common])
    p.add_argument("bed", help="bed code or id")
    p = _leaf(bed, "create", "create a bed", "bed_create", both)
    p.add_argument("bed_code")
    p.add_argument("--location", required=True, help="location id")
    p.add_argument("--bed-id", help="internal id (default: the bed code)")
    p = _leaf(bed, "edit", "move a bed or change its code", "bed_edit", [common])
    p.add_argument("bed", help="bed code or id")
    p.add_argument("--location", help="new location id")
    p.add_argument("--code", dest="new_code", help="new bed code")

    res = _group(sub, "resident", "residents and their elder codes (一人一码)",
                 "  safehome resident create ELD-0101 --name 'Wang Fang' --care-level 2 "
                 "--bed BED-0101\n  safehome resident list --json")  # fmt: skip
    _leaf(res, "list", "residents of the site (codes only)", "resident_list", both)
    p = _leaf(res, "show", "one resident", "resident_show", [common])
    p.add_argument("resident", help="elder code or resident id")
    p = _leaf(res, "create", "create a resident", "resident_create", both)
    p.add_argument("elder_code")
    p.add_argument("--name", required=True, help="display name (never printed in logs)")
    p.add_argument("--care-level", type=int, required=True, choices=range(6), metavar="0-5")
    p.add_argument("--bed", help="bed code")
    p.add_argument("--resident-id", help="internal id (default from the elder code)")
    p.add_argument("--lives-alone", action="store_true")
    p.add_argument("--high-risk", action="store_true")
    p = _leaf(res, "edit", "change a resident", "resident_edit", [common])
    p.add_argument("resident", help="elder code or resident id")
    p.add_argument("--name")
    p.add_argument("--care-level", type=int, choices=range(6), metavar="0-5")
    p.add_argument("--bed", help="bed code")
    p.add_argument("--lives-alone", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument("--high-risk", action=argparse.BooleanOptionalAction, default=None)

    imp = sub.add_parser(
        "import", help="bulk import from CSV (checked line by line; atomic)",
        description="Bulk import locations, beds or residents from a CSV file (UTF-8, header "
        "row). Every bad row is reported with its line number (the header is line 1); with "
        "any error nothing is written.", parents=both,
        epilog="examples:\n  safehome import locations rooms.csv --dry-run\n"
        "  safehome import beds beds.csv\n\ncolumns:\n"
        "  locations: location_id,kind,label[,address]\n"
        "  beds:      bed_code,location_id[,bed_id]\n"
        "  residents: elder_code,display_name,care_level,bed_code"
        "[,resident_id,lives_alone,high_risk]\n\n" + EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    imp.add_argument("kind", choices=IMPORT_KINDS)
    imp.add_argument("file", metavar="FILE.csv")
    imp.add_argument("--dry-run", action="store_true", help="check only, write nothing")
    imp.set_defaults(func=_run("import_csv"))

    lab = _group(sub, "label", "QR labels (codes only): a PNG per code and an A4 PDF sheet",
                 "  safehome label beds --out labels/          # every bed of the site\n"
                 "  safehome label beds BED-0101 BED-0102 --out beds.pdf\n"
                 "  safehome label devices --out devices.pdf")  # fmt: skip
    for what in ("beds", "devices"):
        p = _leaf(lab, what, f"labels for {what} (all of the site when none are named)",
                  f"label_{what}", both)  # fmt: skip
        p.add_argument("codes", nargs="*", metavar="CODE")
        p.add_argument("--out", required=True, metavar="FILE.pdf|DIR",
                       help="a .pdf sheet, or a directory for PNGs and labels.pdf")  # fmt: skip

    # -- devices ---------------------------------------------------------------------------
    dev = _group(sub, "device", "register, bind, test, replace and retire devices",
                 "  safehome device register --kind button --model BT1 --serial SN123\n"
                 "  safehome device bind BT-SN123 --bed BED-0101\n"
                 "  safehome device test BT-SN123\n"
                 "  safehome device replace BT-SN123 --serial SN456\n"
                 "  safehome device decommission BT-SN456 --reason broken --yes")  # fmt: skip
    p = _leaf(dev, "list", "devices of the site", "device_list", both)
    p.add_argument("--location")
    p.add_argument("--bed")
    p = _leaf(dev, "register", "register a device; prints its configuration ONCE",
              "device_register", both)  # fmt: skip
    p.add_argument("--kind", required=True, choices=["button", "bed_sensor", "wearable",
                   "home_hub", "door_contact", "motion_sensor", "smoke_detector",
                   "gas_detector", "water_leak"])  # fmt: skip
    p.add_argument("--hub", help="the home hub this kit sensor reports through")
    p.add_argument("--model", required=True)
    p.add_argument("--serial", required=True)
    p.add_argument("--device-id", help="id (default chosen by the gateway)")
    p.add_argument("--firmware")
    p.add_argument("--heartbeat", type=int, metavar="SECONDS", help="heartbeat interval")
    _config_out(p)
    p = _leaf(dev, "show", "a device, its binding and status", "device_show", [common])
    p.add_argument("device_id")
    p = _leaf(dev, "rotate", "new MQTT password (printed ONCE; the old one stops working)",
              "device_rotate", [common])  # fmt: skip
    p.add_argument("device_id")
    _config_out(p)
    p = _leaf(dev, "decommission", "retire a device: the broker refuses it from now on",
              "device_decommission", [common])  # fmt: skip
    p.add_argument("device_id")
    p.add_argument("--reason")
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    p = _leaf(dev, "bind", "bind a device to a bed and/or resident", "device_bind", [common])
    p.add_argument("device_id")
    p.add_argument("--bed", help="bed code or id")
    p.add_argument("--resident", help="elder code or resident id")
    p.add_argument("--location", help="location id (default: the bed's)")
    p = _leaf(dev, "unbind", "release a device from its bed/resident", "device_unbind", [common])
    p.add_argument("device_id")
    p = _leaf(dev, "replace", "swap a faulty device: the new one takes over its binding",
              "device_replace", [common])  # fmt: skip
    p.add_argument("device_id", help="the faulty device")
    p.add_argument("--serial", required=True, help="serial of the new device")
    p.add_argument("--model", help="model of the new device (default: the old one's)")
    p.add_argument("--new-id", help="id of the new device (default chosen by the gateway)")
    p.add_argument("--firmware")
    _config_out(p)
    p = _leaf(dev, "test", "acceptance test: follow the prompts; leaves a commissioning record",
              "device_test", [common])  # fmt: skip
    p.add_argument("device_id")
    p.add_argument("--non-interactive", action="store_true",
                   help="no live display or questions; wait at most --timeout")  # fmt: skip
    p.add_argument("--timeout", type=float, metavar="S", help="seconds (default: the gateway's)")
    p.add_argument("--notes", help="note stored with the commissioning record (no names)")
    p.add_argument("--abort", action="store_true", help="abort the device's running test")
    p = dev.add_parser(
        "emulate", help="play a device from its saved configuration (no hardware needed)",
        description="Connect to the broker as the device of a configuration saved with "
        "--config-out and do what a person does with it: the messages, acks, heartbeats and "
        "last will of docs/device-protocol.md. No ACTION: read actions from standard input.",
        epilog="actions: press, long-press, cancel (button); lie-down, get-up (bed sensor); "
        "wear, take-off, press (SOS), cancel, shake, fall, get-up (wearable); online (all)\n"
        "examples:\n  safehome device emulate --config btn.json press\n"
        "  safehome device emulate --config bed.json lie-down get-up\n"
        "  safehome device emulate --config wr.json wear shake\n\nexit codes:\n  0 every "
        "event stored by the gateway   1 an event rejected or not acked\n  2 bad arguments or "
        "configuration    3 broker unreachable   4 broker refused the credentials",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    p.add_argument(
        "--config",
        required=True,
        metavar="FILE.json",
        help="the device configuration (safehome device register --config-out)",
    )
    p.add_argument("actions", nargs="*", metavar="ACTION", help="what to do, in order")
    p.add_argument(
        "--kind",
        choices=["button", "bed_sensor", "wearable", "home_hub", "door_contact",
                 "motion_sensor", "smoke_detector", "gas_detector", "water_leak"],
        help="device kind (default: from the id, e.g. btn-..., or the actions)",
    )  # fmt: skip
    p.add_argument(
        "--hub-config",
        metavar="HUB.json",
        help="a kit sensor reporting through its home hub: the hub's configuration",
    )
    p.add_argument("--count", type=int, default=1, metavar="N", help="do each action N times")
    p.add_argument(
        "--seconds",
        type=float,
        metavar="S",
        help="how long lie-down/wear last (default 8/3) and online (default: Ctrl-C)",
    )
    p.add_argument(
        "--ack-wait",
        type=float,
        default=60.0,
        metavar="S",
        help="how long to retry an event until the gateway acks it",
    )
    p.add_argument("--ca-file", metavar="FILE", help="CA certificate of a TLS broker")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.set_defaults(func=_emulate)

    com = _group(sub, "commissioning", "commissioning records (acceptance test results)",
                 "  safehome commissioning list\n"
                 "  safehome commissioning export --format pdf --out site-a.pdf")  # fmt: skip
    p = _leaf(com, "list", "records of the site, newest first", "commissioning_list", both)
    p = _leaf(com, "export", "records as CSV or PDF", "commissioning_export", both)
    p.add_argument("--format", required=True, choices=["csv", "pdf"])
    p.add_argument("--out", metavar="FILE", help="default: commissioning-<site>.<format>; "
                   "'-' writes CSV to stdout")  # fmt: skip

    st = top("status", "online/offline, last seen, battery, signal, firmware, last test",
             "status", "  safehome status\n  safehome status --bed BED-0101 --watch\n"
             "  safehome status --device BT-SN123 --json")  # fmt: skip
    scope = st.add_mutually_exclusive_group()
    scope.add_argument("--site")
    scope.add_argument("--location")
    scope.add_argument("--bed", help="bed code or id")
    scope.add_argument("--device")
    st.add_argument("--watch", action="store_true", help="refresh live until Ctrl-C")
    st.add_argument("--interval", type=float, default=5.0, metavar="S", help="watch refresh (s)")

    comp = sub.add_parser(
        "completion", help="print a shell completion script",
        description="Print a completion script for bash or zsh.",
        epilog="examples:\n  safehome completion bash > "
        "~/.local/share/bash-completion/completions/safehome\n"
        "  safehome completion zsh > \"${fpath[1]}/_safehome\"",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    comp.add_argument("shell", choices=["bash", "zsh"])
    comp.set_defaults(func=_run("completion"))
