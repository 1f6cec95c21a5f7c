# Local stack and tests. Everything runs without Docker; see scripts/stack.sh.
# Ports and URLs come from app/config.py, so e.g. `WEB_PORT=8001 make up` works.

STACK := scripts/stack.sh

.PHONY: up down ps logs services test bench clean

up:
	$(STACK) deps
	$(STACK) up

down:
	$(STACK) down

ps:
	$(STACK) ps

logs:
	$(STACK) logs $(NAME)

services:
	$(STACK) deps
	$(STACK) services

test:
	$(STACK) deps && $(STACK) services && python3 -m pytest

bench:
	$(STACK) deps && $(STACK) services && python3 -m pytest tests/bench -p no:cacheprovider -s -o timeout=1500

clean:
	$(STACK) clean
