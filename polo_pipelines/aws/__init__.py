"""AWS cost sources: data exports (CUR 2.0 / legacy CUR) and Cost Explorer."""
