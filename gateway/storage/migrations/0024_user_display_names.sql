-- People are people (issue 11 §3): a display name for every API user ("张丽"), shown by the
-- console, the timeline and the family view together with the role ("护工 张丽") instead of
-- user ids or login names. Personal data like the username: never logged (logs carry
-- user_id). NULL until set (`safehome user rename`, POST /users/{user_id}/display-name);
-- the pages then show the role only.
ALTER TABLE users
    ADD COLUMN display_name text
        CHECK (display_name IS NULL OR length(btrim(display_name)) BETWEEN 1 AND 64);
