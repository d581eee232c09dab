"""Model folders on the Hugging Face Hub: `hf://user/repo[@revision]` sources and `reseg package --push`.

huggingface_hub is an optional extra (`pip install 'reseg[hub]'`), imported only here and only when used.
"""

from __future__ import annotations

import re
from pathlib import Path
from types import ModuleType
from typing import Any

from reseg.errors import ResegError

PREFIX = "hf://"
_REPO = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")
_REVISION = re.compile(r"[\w./-]+")


class HubError(ResegError):
    """A Hub source is malformed, cannot be reached, or the upload failed."""


def is_hub_source(source: Any) -> bool:
    return isinstance(source, str) and source.startswith(PREFIX)


def parse_source(source: str) -> tuple[str, str | None]:
    """`hf://user/repo@revision` -> ("user/repo", "revision"); the revision is optional."""
    repo, _, revision = source[len(PREFIX) :].partition("@")
    if not _REPO.fullmatch(repo) or (revision and not _REVISION.fullmatch(revision)):
        raise HubError(f"{source!r} is not a Hub model; expected hf://user/repo or hf://user/repo@revision")
    return repo, revision or None


def _hub() -> ModuleType:
    try:
        import huggingface_hub
    except ImportError:
        raise HubError("Hugging Face Hub models need the huggingface_hub package: pip install 'reseg[hub]'") from None
    return huggingface_hub


def download(source: str) -> Path:
    """The local folder of a Hub model (downloaded once into the Hub cache; HF_HUB_OFFLINE=1 reads the cache)."""
    from reseg import __version__
    from reseg.model_folder import FILES

    repo, revision = parse_source(source)
    try:
        folder = _hub().snapshot_download(
            repo_id=repo,
            revision=revision,
            allow_patterns=list(FILES),
            library_name="reseg",
            library_version=__version__,
        )
    except (OSError, ValueError) as err:  # huggingface_hub's HTTP and cache errors are OSErrors
        detail = " ".join(str(err).split())[:300]
        raise HubError(f"cannot download {source}: {type(err).__name__}: {detail}") from None
    return Path(folder)


def push(folder: str | Path, repo: str) -> str:
    """Upload a model folder to the Hub model repo `user/repo` (created if needed); returns its address.

    Needs a token with write access (`hf auth login` or HF_TOKEN)."""
    if not _REPO.fullmatch(repo):
        raise HubError(f"--push {repo!r} is not a Hub repository; expected user/repo")
    hub = _hub()
    try:
        api = hub.HfApi()
        api.create_repo(repo, repo_type="model", exist_ok=True)
        info = api.upload_folder(
            repo_id=repo,
            folder_path=str(folder),
            repo_type="model",
            commit_message=f"Upload reseg model folder {Path(folder).name}",
        )
    except (OSError, ValueError) as err:
        detail = " ".join(str(err).split())[:300]
        raise HubError(
            f"pushing {folder} to {repo} failed: {type(err).__name__}: {detail} "
            f"(a token with write access comes from `hf auth login` or HF_TOKEN)"
        ) from None
    return str(getattr(info, "commit_url", None) or f"https://huggingface.co/{repo}")
