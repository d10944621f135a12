"""The article's usage dashboard, pointed at tollgate: lists a plan's keys
and their usage with boto3, and prints one JSON line per key."""
import json
import os
import sys
from datetime import datetime, timedelta, timezone

import boto3

apigw = boto3.client("apigateway", endpoint_url=os.environ["TOLLGATE_ENDPOINT"])


def get_plan_usage(usage_plan_id, days=7):
    """Get usage data for all keys in a plan."""
    now = datetime.now(timezone.utc)
    end_date = now.strftime("%Y-%m-%d")
    start_date = (now - timedelta(days=days)).strftime("%Y-%m-%d")

    keys = apigw.get_usage_plan_keys(usagePlanId=usage_plan_id)

    report = []
    for key in keys["items"]:
        usage = apigw.get_usage(
            usagePlanId=usage_plan_id,
            keyId=key["id"],
            startDate=start_date,
            endDate=end_date,
        )
        total_used = sum(day_usage[0] for days in usage["items"].values() for day_usage in days)
        report.append({"key_name": key["name"], "key_id": key["id"], "total_requests": total_used})
    return sorted(report, key=lambda x: x["total_requests"], reverse=True)


for entry in get_plan_usage(sys.argv[1]):
    print(json.dumps(entry))
