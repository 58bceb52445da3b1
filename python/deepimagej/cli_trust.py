"""``deepimagej trust BUNDLE``: show a bundle's audit and record that the user trusts its content."""

from __future__ import annotations

from pathlib import Path

import click

from deepimagej.cli_errors import friendly_errors
from deepimagej.errors import DeepImageJError


@click.command("trust")
@click.argument("bundle", type=click.Path(path_type=Path), required=False)
@click.option("--revoke", is_flag=True, help="Remove the trust record of BUNDLE instead.")
@click.option("--list", "list_records", is_flag=True, help="List the trusted bundles.")
@friendly_errors
def trust_cmd(bundle: Path | None, revoke: bool, list_records: bool) -> None:
    """Trust BUNDLE: let it run what its audit refuses (file, network or process access).

    The record holds the SHA-256 of the bundle's descriptors, weights and macros: any change to
    them needs a new `deepimagej trust`. Records live in $XDG_CONFIG_HOME/deepimagej/trusted.
    """
    from deepimagej.audit import audit_bundle, record_trust, revoke_trust, trust_records
    from deepimagej.audit.trust import records_dir
    from deepimagej.bundle import load_bundle

    if list_records:
        records = trust_records()
        if not records:
            click.echo(f"no trusted bundle ({records_dir()})")
        for record in records:
            click.echo(
                f"{record.get('trusted_at', '?')}  {record.get('name', '?')}  {record.get('bundle', '?')}  "
                f"sha256 {str(record.get('content_sha256', '?'))[:16]}"
            )
        return
    if bundle is None:
        raise DeepImageJError("deepimagej trust: give a BUNDLE folder (or --list)")
    spec = load_bundle(bundle)
    if revoke:
        existed = revoke_trust(spec)
        click.echo(f"{spec.name}: trust {'revoked' if existed else 'was not recorded'} ({bundle})")
        return
    report = audit_bundle(spec)
    for finding in report.findings:
        click.echo(
            f"{'refused' if finding.refused else 'note'}: {finding.source}: {finding.what}: {finding.detail}"
        )
    if not report.findings:
        click.echo(
            f"{spec.name}: the audit found nothing to refuse ({', '.join(report.audited) or 'no weights'}); "
            "recording trust anyway"
        )
    record_file = record_trust(spec, [str(f) for f in report.findings])
    click.echo(f"trusted '{spec.name}' ({bundle}): record {record_file}")
