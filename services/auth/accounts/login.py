"""Account use cases: register (with profile provisioning), authenticate, change password."""

from __future__ import annotations

import asyncio
import logging
import uuid

from common.timestamps import Clock
from common.tracing import TraceContext
from services.auth.metrics import AuthMetrics
from services.auth.password_policy import check_password
from services.auth.passwords import Passwords
from services.auth.provisioning import ProfileProvisioner
from services.auth.repository import Account, AuthRepository
from services.auth.settings import AuthSettings
from services.auth.throttle import LoginThrottle, account_key, address_key, pair_key

_LOGGER = logging.getLogger(__name__)


class InvalidCredentialsError(Exception):
    """Wrong password or unknown user: deliberately one error for both."""


class LoginThrottledError(Exception):
    def __init__(self, retry_after: float) -> None:
        super().__init__("login throttled")
        self.retry_after = retry_after


class ProvisioningError(Exception):
    """The users service did not take the profile; the account was removed again."""


class PasswordUnchangedError(Exception):
    """Someone else changed the password between our read and our write."""


class Accounts:
    def __init__(
        self,
        settings: AuthSettings,
        repository: AuthRepository,
        passwords: Passwords,
        throttle: LoginThrottle,
        provisioner: ProfileProvisioner | None,
        metrics: AuthMetrics,
        clock: Clock,
    ) -> None:
        self.settings = settings
        self.repository = repository
        self.passwords = passwords
        self.throttle = throttle
        self.provisioner = provisioner
        self.metrics = metrics
        self.clock = clock

    async def register(
        self,
        username: str,
        password: str,
        display_name: str | None,
        *,
        request_id: str | None = None,
        trace: TraceContext | None = None,
    ) -> Account:
        """Create the account, then its profile; undo the account when that fails.

        Raises PasswordPolicyError, UsernameTakenError or ProvisioningError.
        """
        # zxcvbn is pure Python: a thread keeps its few milliseconds off the loop.
        await asyncio.to_thread(check_password, username, password)
        password_hash = await self.passwords.hash(password)
        account = await self.repository.create_account(
            str(uuid.uuid4()), username, password_hash, "user", self.clock()
        )
        if self.provisioner is not None:
            provisioned = await self.provisioner.provision(
                account.id,
                username,
                display_name or username,
                request_id=request_id,
                trace=trace,
            )
            if not provisioned:
                # An account never exists without its profile (common.md contract).
                await self.repository.delete_account(account.id)
                raise ProvisioningError(account.id)
        _LOGGER.info("account registered", extra={"account_id": account.id})
        return account

    async def authenticate(self, username: str, password: str, address: str) -> Account:
        """Check a password login, throttled per account and per source address.

        Raises LoginThrottledError (without touching the password) or
        InvalidCredentialsError; both behave the same for unknown and existing users.
        """
        now = self.clock()
        account_k, address_k = account_key(username), address_key(address)
        pair_k = pair_key(username, address)
        lockouts = await self.throttle.lockouts([account_k, address_k], now)
        account_locked, address_locked = lockouts.get(account_k), lockouts.get(address_k)
        # An address locked for spraying still lets in the accounts that signed in
        # correctly from it lately (the people behind that NAT); nobody else is checked.
        address_blocks = address_locked is not None and not await self.throttle.known(
            pair_k, now
        )
        waits = [account_locked, address_locked if address_blocks else None]
        if any(wait is not None for wait in waits):
            # The longest of the lockouts that apply: waiting that long is enough.
            raise LoginThrottledError(max(wait for wait in waits if wait is not None))
        account = await self.repository.account_by_username(username)
        # Unknown users, and accounts that sign in only with an external provider, are
        # checked against a dummy hash: same work, same answer.
        verification = await self.passwords.verify(
            account.password_hash if account and account.has_password else None, password
        )
        if account is None or not verification.ok:
            await self.throttle.failed(
                [
                    (account_k, self.settings.login_max_failures),
                    (address_k, self.settings.login_max_failures_per_address),
                ],
                now,
            )
            if address_locked is not None:
                # The same answer a locked address gives everyone else: a wrong password
                # here must not tell a sprayer behind that NAT that the account exists.
                raise LoginThrottledError(address_locked)
            raise InvalidCredentialsError()
        await self.throttle.succeeded(account_k, pair_k, now)
        if verification.needs_rehash:
            # Parameters were raised since this hash was made: upgrade it while we hold
            # the password (the only moment we ever do).
            new_hash = await self.passwords.hash(password)
            if await self.repository.upgrade_password_hash(
                account.id, account.password_hash, new_hash
            ):
                _LOGGER.info("password hash upgraded", extra={"account_id": account.id})
        return account

    async def change_password(self, account: Account, current: str, new: str) -> None:
        """Verify the current password (throttled like a login), set the new one and
        revoke every refresh-token family of the account in the same transaction."""
        now = self.clock()
        key = account_key(account.username)
        retry_after = await self.throttle.retry_after([key], now)
        if retry_after is not None:
            raise LoginThrottledError(retry_after)
        if not (await self.passwords.verify(account.password_hash, current)).ok:
            await self.throttle.failed([(key, self.settings.login_max_failures)], now)
            raise InvalidCredentialsError()
        await asyncio.to_thread(check_password, account.username, new)
        new_hash = await self.passwords.hash(new)
        if not await self.repository.change_password(
            account.id, account.password_hash, new_hash, now
        ):
            raise PasswordUnchangedError()
        _LOGGER.info("password changed; sessions revoked", extra={"account_id": account.id})
