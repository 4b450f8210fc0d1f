"""What kind of boot a soak run had (bench/soak.py, bench/smp_soak.py): ok, or the failure's
kind, the first that applies: firmware (it gave up without starting the loader), firmware hang
(the timeout came before the loader's first line), hang (no result before the timeout), loader
(the loader stopped with an error), reset (QEMU status 0: a triple fault with -no-reboot, or a
power-off), exit (another failure), or "wrong report: <why>" when the kernel succeeded but
`wrong` finds its report is not the host's truth."""

from __future__ import annotations

from collections.abc import Callable

from hvboot.vm import firmware_words, qemu


def judge(result: qemu.RunResult, wrong: Callable[[str], str | None]) -> str:
    if not result.loader_started:
        return "firmware"
    if result.timed_out:
        # Still in the firmware (stuck retrying its own reads, say), or in the loader or kernel.
        return "hang" if firmware_words.loader_started(result.serial) else "firmware hang"
    if result.loader_error is not None:
        return "loader"
    if result.status == 0:
        return "reset"
    if not result.ok:
        return "exit"
    try:
        why = wrong(result.serial)
    except Exception as e:  # a malformed report is a wrong one
        why = str(e)
    return "ok" if why is None else f"wrong report: {why}"
