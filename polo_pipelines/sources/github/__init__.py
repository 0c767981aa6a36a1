"""GitHub: an organisation's billing usage report and its Actions runs, per repository and workflow."""

from polo_pipelines.sources.spec import Setting, SourceSpec

SPEC = SourceSpec(
    name="github",
    platform="github",
    collector="cost_github",
    description="Daily GitHub costs per repository, product and Actions workflow, reconciled to the billing report (collector cost_github).",
    kinds=("github",),
    configured_by="POLO_GITHUB_ORG",
    settings=(
        Setting("POLO_GITHUB_ORG", "the organisation"),
        Setting(
            "POLO_GITHUB_TOKEN",
            "fine-grained token: organisation administration read, Actions read, Contents read (the commits that changed a workflow)",
            secret="polo/github-pat",
        ),
        Setting("POLO_GITHUB_API_URL", "GitHub Enterprise Server's API root (default https://api.github.com)"),
    ),
    sample="server",
)
