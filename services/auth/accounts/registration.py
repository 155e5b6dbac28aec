"""register_account: the one way an account comes to exist, for both sign-up paths.

A password sign-up (POST /auth/register) and a first external sign-in both end here:
create the account (with any rows that must exist together with it), provision its
profile at the users service, and remove the account again when that fails, because an
account never exists without its profile (common.md contract). Every registration outcome
is counted here and nowhere else.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence

import sqlalchemy as sa

from common.timestamps import Clock
from common.tracing import TraceContext
from services.auth.accounts.password_policy import PasswordPolicyError, check_password
from services.auth.accounts.passwords import Passwords
from services.auth.accounts.provisioning import ProfileProvisioner
from services.auth.accounts.repository import (
    NO_PASSWORD,
    Account,
    AccountRepository,
    UsernameTakenError,
)
from services.auth.metrics import AuthMetrics

_LOGGER = logging.getLogger(__name__)


class ProvisioningError(Exception):
    """The users service did not take the profile; the account was removed again."""


def normalize_username(username: str) -> str:
    """The one spelling of a username that is stored, looked up and throttled."""
    return username.lower()


class Registration:
    def __init__(
        self,
        repository: AccountRepository,
        passwords: Passwords,
        provisioner: ProfileProvisioner | None,
        metrics: AuthMetrics,
        clock: Clock,
        default_role: str,
    ) -> None:
        self.default_role = default_role  # the scopes file's role for new accounts
        self.repository = repository
        self.passwords = passwords
        self.provisioner = provisioner
        self.metrics = metrics
        self.clock = clock

    async def register_account(
        self,
        usernames: Sequence[str],
        *,
        password: str | None,
        display_name: str | None,
        together: Callable[[Account], Sequence[sa.Insert]] = lambda account: (),
        explain_conflict: Callable[[], Awaitable[None]] | None = None,
        request_id: str | None = None,
        trace: TraceContext | None = None,
    ) -> Account:
        """Create an account under the first free name of `usernames`, then its profile.

        `password` None makes an account that signs in only through an external provider.
        `together(account)` gives rows stored in the account's transaction, and
        `explain_conflict` may name a conflict on them (see AccountRepository.create).
        Raises PasswordPolicyError, UsernameTakenError (every name taken) or
        ProvisioningError, each counted in auth_registrations.
        """
        try:
            account = await self._create(usernames, password, together, explain_conflict)
        except PasswordPolicyError:
            self.metrics.registrations.labels("invalid").inc()
            raise
        except UsernameTakenError:
            self.metrics.registrations.labels("conflict").inc()
            raise
        if self.provisioner is not None:
            provisioned = await self.provisioner.provision(
                account.id,
                account.username,
                display_name or account.username,
                request_id=request_id,
                trace=trace,
            )
            if not provisioned:
                await self.repository.delete(account.id)
                self.metrics.registrations.labels("provisioning_failed").inc()
                raise ProvisioningError(account.id)
        self.metrics.registrations.labels("success").inc()
        _LOGGER.info("account registered", extra={"account_id": account.id})
        return account

    async def _create(
        self,
        usernames: Sequence[str],
        password: str | None,
        together: Callable[[Account], Sequence[sa.Insert]],
        explain_conflict: Callable[[], Awaitable[None]] | None,
    ) -> Account:
        usernames = [normalize_username(username) for username in usernames]
        password_hash = NO_PASSWORD
        if password is not None:
            # zxcvbn is pure Python: a thread keeps its few milliseconds off the loop.
            await asyncio.to_thread(check_password, usernames[0], password)
            password_hash = await self.passwords.hash(password)
        for username in usernames:
            account = Account(
                str(uuid.uuid4()), username, password_hash, self.default_role, self.clock()
            )
            try:
                await self.repository.create(
                    account, together=together(account), explain_conflict=explain_conflict
                )
            except UsernameTakenError:
                continue
            return account
        raise UsernameTakenError(usernames[-1])
