"""Password sign-in and password change, throttled per account and per source address."""

from __future__ import annotations

import asyncio
import logging

from common.timestamps import Clock
from services.auth.accounts.password_policy import check_password
from services.auth.accounts.passwords import Passwords
from services.auth.accounts.registration import normalize_username
from services.auth.accounts.repository import Account, AccountRepository
from services.auth.accounts.throttle import LoginThrottle, account_key, address_key, pair_key
from services.auth.settings import AuthSettings

_LOGGER = logging.getLogger(__name__)


class InvalidCredentialsError(Exception):
    """Wrong password or unknown user: deliberately one error for both."""


class LoginThrottledError(Exception):
    def __init__(self, retry_after: float) -> None:
        super().__init__("login throttled")
        self.retry_after = retry_after


class PasswordUnchangedError(Exception):
    """Someone else changed the password between our read and our write."""


class NotAUserError(Exception):
    """The caller's subject is no account (a machine client's token, or a deleted user)."""


class NoPasswordError(Exception):
    """The account signs in only through an external provider."""


class Credentials:
    def __init__(
        self,
        settings: AuthSettings,
        repository: AccountRepository,
        passwords: Passwords,
        throttle: LoginThrottle,
        clock: Clock,
    ) -> None:
        self.settings = settings
        self.repository = repository
        self.passwords = passwords
        self.throttle = throttle
        self.clock = clock

    async def user_account(self, account_id: str) -> Account:
        """The account a token's subject names; raises NotAUserError."""
        account = await self.repository.by_id(account_id)
        if account is None:
            raise NotAUserError(account_id)
        return account

    async def authenticate(self, username: str, password: str, address: str) -> Account:
        """Check a password login, throttled per account and per source address.

        Raises LoginThrottledError (without touching the password) or
        InvalidCredentialsError; both behave the same for unknown and existing users.
        """
        username = normalize_username(username)
        now = self.clock()
        account_k, address_k = account_key(username), address_key(address)
        pair_k = pair_key(username, address)
        lockouts = await self.throttle.lockouts([account_k, address_k], now)
        account_locked, address_locked = lockouts.get(account_k), lockouts.get(address_k)
        # An address locked for spraying still lets in the accounts that signed in
        # correctly from it lately (the people behind that NAT); nobody else is checked.
        address_blocks = address_locked is not None and not await self.throttle.known(pair_k, now)
        waits = [account_locked, address_locked if address_blocks else None]
        if any(wait is not None for wait in waits):
            # The longest of the lockouts that apply: waiting that long is enough.
            raise LoginThrottledError(max(wait for wait in waits if wait is not None))
        account = await self.repository.by_username(username)
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

    async def change_password(self, account_id: str, current: str, new: str) -> None:
        """Verify the current password (throttled like a login), set the new one and
        revoke every refresh-token family of the account in the same transaction.

        Raises NotAUserError, NoPasswordError, LoginThrottledError,
        InvalidCredentialsError, PasswordPolicyError or PasswordUnchangedError.
        """
        account = await self.user_account(account_id)
        if not account.has_password:
            raise NoPasswordError(account_id)
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
