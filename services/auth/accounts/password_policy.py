"""Which new passwords are refused, and the reason given to the person choosing one.

NIST SP 800-63B section 5.1.1.2 asks verifiers to compare a new password with values known
to be commonly used, expected or compromised, and with context-specific words (the name of
the service, the username). zxcvbn does that offline: it ships frequency lists of common
passwords, English words, names and keyboard patterns, and estimates how many guesses
an attacker who knows those lists needs. A password is refused below score 3, that is
fewer than 10^8 guesses: what zxcvbn calls too guessable against an offline attack on a
slow hash, the attack Argon2 is there to slow down.
"""

from __future__ import annotations

from zxcvbn import zxcvbn

# Words an attacker would try first against this service.
SERVICE_WORDS = ("passgate",)
MIN_SCORE = 3
# zxcvbn's matching grows faster than linearly with length (a random 72-character string
# took over half a second of CPU here, 256 characters took 50 s), so only this many leading
# characters are judged. A password whose first 32 characters are guessable is refused;
# one whose first 32 are not is strong whatever follows.
JUDGED_CHARACTERS = 32


class PasswordPolicyError(ValueError):
    """The new password is refused; the message says why (and never repeats it)."""


def check_password(username: str, password: str) -> None:
    """Raise PasswordPolicyError for a password that is easy to guess; 12-256 characters
    (API.md) is enforced by the request schema before this runs."""
    folded = password.strip().casefold()
    if folded == username.casefold() or folded in {
        username.casefold() * 2,
        username[::-1].casefold(),
    }:
        raise PasswordPolicyError("the password must not be the username")
    if len(set(password)) < 4:
        raise PasswordPolicyError("the password must use at least 4 different characters")
    estimate = zxcvbn(
        password[:JUDGED_CHARACTERS],
        user_inputs=[*SERVICE_WORDS, username],
        max_length=JUDGED_CHARACTERS,
    )
    if estimate["score"] < MIN_SCORE:
        warning = estimate["feedback"]["warning"] or "it follows a pattern that is tried early"
        raise PasswordPolicyError(
            "the password is too common or too easy to guess "
            f"({warning.rstrip('.')}); a few uncommon words together make a strong one"
        )
