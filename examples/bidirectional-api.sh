#!/bin/sh
# Two accounts, each the other's provider, through the tenant API alone (the operator
# applied examples/bidirectional.yaml). Needs in the environment: API (https://HOST:PORT),
# CA (the API certificate's CA, PEM), TOKEN_A (account 100001), TOKEN_B (account 100002).
set -eu
api() { token=$1; shift; curl -fsS --cacert "$CA" -H "Authorization: Bearer $token" -H 'Content-Type: application/json' "$@"; echo; }

# Account A publishes `a-api` from its VPC1 for account B (no health checks: one backend).
api "$TOKEN_A" -X POST "$API/v1/services" -d '{"name": "a-api", "vpc": "vpc1", "backends": [{"address": "10.0.0.2"}], "ports": [{"protocol": "tcp", "endpoint_port": 90, "service_port": 9090}], "allowed_accounts": ["100002"], "health_check": {"type": "none"}}'
# Account B publishes `b-api` from its VPC2 for account A.
api "$TOKEN_B" -X POST "$API/v1/services" -d '{"name": "b-api", "vpc": "vpc2", "backends": [{"address": "192.168.2.10"}, {"address": "192.168.2.11"}], "ports": [{"protocol": "tcp", "endpoint_port": 80, "service_port": 8080}], "allowed_accounts": ["100001"]}'
# Each connects to the other's service from its own VPC (pendingAcceptance)...
api "$TOKEN_A" -X POST "$API/v1/endpoints" -d '{"name": "b-from-vpc1", "vpc": "vpc1", "service": "b-api", "ip": "10.0.0.100"}'
api "$TOKEN_B" -X POST "$API/v1/endpoints" -d '{"name": "a-from-vpc2", "vpc": "vpc2", "service": "a-api", "ip": "192.168.2.100"}'
# ...and each accepts the other's connection to its own service.
api "$TOKEN_B" -X POST "$API/v1/services/b-api/connections/b-from-vpc1/accept"
api "$TOKEN_A" -X POST "$API/v1/services/a-api/connections/a-from-vpc2/accept"
