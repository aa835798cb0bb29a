DROP TABLE vidjobs.api_keys;
