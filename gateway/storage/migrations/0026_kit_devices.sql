-- The safe-home kit (issue 12): door contacts, motion sensors, smoke / gas / water-leak
-- detectors and the home hub that most of them report through.
--
-- A child sensor of a hub has no MQTT account of its own: the hub publishes for it under the
-- child's own id, and the broker's ACL lets the hub write exactly its own children's topics
-- (gateway.kit.hubs, gateway.brokerauth). devices.hub_id names the hub; a hub is never a child.
DO $$
DECLARE
    c record;
BEGIN
    FOR c IN
        SELECT conrelid::regclass AS tbl, conname FROM pg_constraint
        WHERE conrelid IN ('devices'::regclass, 'acceptance_tests'::regclass)
          AND contype = 'c'
          AND pg_get_constraintdef(oid) LIKE '%''bed_sensor''%'
    LOOP
        EXECUTE format('ALTER TABLE %s DROP CONSTRAINT %I', c.tbl, c.conname);
    END LOOP;
END
$$;
ALTER TABLE devices ADD CONSTRAINT devices_kind_check CHECK (kind IN (
    'button', 'bed_sensor', 'wearable', 'home_hub', 'door_contact', 'motion_sensor',
    'smoke_detector', 'gas_detector', 'water_leak'));
ALTER TABLE acceptance_tests ADD CONSTRAINT acceptance_tests_kind_check CHECK (kind IN (
    'button', 'bed_sensor', 'wearable', 'home_hub', 'door_contact', 'motion_sensor',
    'smoke_detector', 'gas_detector', 'water_leak'));

ALTER TABLE devices
    ADD COLUMN hub_id text REFERENCES devices,
    ADD CONSTRAINT devices_hub_not_self CHECK (hub_id IS NULL OR hub_id <> device_id);
CREATE INDEX devices_hub_idx ON devices (hub_id) WHERE hub_id IS NOT NULL;
