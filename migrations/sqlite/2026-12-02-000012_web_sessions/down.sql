DROP TABLE web_preferences;
DROP TABLE web_sessions;
