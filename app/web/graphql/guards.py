"""Who may run each GraphQL mutation, and what it costs: exactly what its REST twin checks and
charges (app/web/api/core.py `RouteDoc.admit`: the twin's address budgets, its credential rule, its
user's budgets), so neither API is a way around the other's rules.

| mutation       | REST twin                                  |
| -------------- | ------------------------------------------ |
| `createUser`   | `POST /api/v1/auth/guest` (a new player from a name, an account of the address's budget) |
| `createBoard`  | `POST /api/v1/leaderboards`                |
| `resetBoard`   | `POST /api/v1/leaderboards/<board_id>/reset` |
| `submitScore`  | `POST /api/v1/scores`                      |
| `submitScores` | `POST /api/v1/scores/batch`                |

An access token the operation carries must be valid (`check_credential`, as the gateway in front
judges `POST /graphql`); beyond that, as on REST, a credential is used only by the fields that need
one: a read, or `createUser`, runs for anyone. Besides its mutations, an operation counts once against the
address's API budget (what reading its document costs) before it is parsed, and a query or a
subscription once more as a public read: the same for `POST /graphql` and for each `subscribe`
over the socket.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps
from typing import Any

from graphql import OperationDefinitionNode, OperationType

from app.accounts.api_keys import PREFIX as API_KEY_PREFIX
from app.web.api import auth, leaderboards, scores  # noqa: F401 - the twins' registrations (ROUTE_DOCS)
from app.web.api.core import RouteDoc, bearer_token, principal_from_token, route_doc
from app.web.extensions import rate_limits
from app.web.ratelimits import Limit


@dataclass(frozen=True)
class Caller:
    """Who sends an operation, as a REST request shows it: the client's address, and the
    Authorization it carries (`Bearer <token or API key>`, or None)."""
    address: str
    authorization: str | None


# mutation field -> its REST twin
TWINS: dict[str, RouteDoc] = {}


def twin(field: str, method: str, rule: str) -> Callable[[Callable], Callable]:
    """Binds the resolver of the mutation `field` to its REST twin `method rule`: each call is admitted
    (budgets, credential) as a request of the twin, and the resolver gets the caller's principal
    (None for a twin open to anyone) after `info`."""
    doc = TWINS[field] = route_doc(method, rule)

    def decorate(resolver: Callable) -> Callable:
        @wraps(resolver)
        def admitted(obj: Any, info: Any, **arguments: Any) -> Any:
            caller: Caller = info.context.caller
            principal = doc.admit(caller.address, lambda: bearer_token(caller.authorization))
            return resolver(obj, info, principal, **arguments)

        return admitted

    return decorate


def check_credential(caller: Caller) -> None:
    """An access token the operation carries is judged once, before it runs, as the gateway in front of
    the service judges it (docs/gateways.md): a forged, expired or revoked one is 401 even for an
    operation that needs none. An API key is judged by the fields that use it (score writes)."""
    if caller.authorization is None:
        return
    token = bearer_token(caller.authorization)
    if not token.startswith(API_KEY_PREFIX):
        principal_from_token(token)


def charge_document(caller: Caller) -> None:
    """What an operation's text costs before it is read: one API request of the address."""
    rate_limits().hit(Limit("api_per_address", caller.address))


def charge_operation(caller: Caller, operation: OperationDefinitionNode) -> None:
    """A query or a subscription is one public read of the address; a mutation's fields are charged
    one by one, as their twins (`twin`)."""
    if operation.operation != OperationType.MUTATION:
        rate_limits().hit(Limit("public_reads_per_address", caller.address))
