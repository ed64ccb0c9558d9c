-- The care centre's phone number, shown to family members on the family view (issue 11 §6)
-- so a daughter can call the centre that looks after her mother. A public switchboard
-- number of the operator (not personal data); NULL when none is configured.
ALTER TABLE sites
    ADD COLUMN care_phone text
        CHECK (care_phone IS NULL OR care_phone ~ '^[0-9+() -]{3,32}$');
