-- Each person's language (issue 11 §2): family and community-worker contacts, and API users
-- (staff pages, reports), get notifications in zh-CN by default, English when they choose
-- it. Set by `safehome user language`, `safehome contact language` or a site definition's
-- contact `language`; the browser pages keep their own per-browser choice.
ALTER TABLE contacts
    ADD COLUMN language text NOT NULL DEFAULT 'zh-CN' CHECK (language IN ('zh-CN', 'en'));
ALTER TABLE users
    ADD COLUMN language text NOT NULL DEFAULT 'zh-CN' CHECK (language IN ('zh-CN', 'en'));
