#!/bin/sh
# The example application: prints its greeting and configuration.
echo "$(cat /app/greeting) from the escrow example"
cat /app/settings.conf
