-- DAViCal 1.1.12 (https://gitlab.com/davical-project/davical), dba/davical.sql as Debian's
-- davical 1.1.12-2 installs it in /usr/share/davical/dba/: its id sequence and the
-- principal_type and principal tables, as published. Needs awl_tables.sql (usr) first.

CREATE SEQUENCE dav_id_seq;

CREATE TABLE principal_type (
  principal_type_id SERIAL PRIMARY KEY,
  principal_type_desc TEXT
);


-- web needs SELECT,INSERT,UPDATE,DELETE
CREATE TABLE principal (
  principal_id INT8 DEFAULT nextval('dav_id_seq') PRIMARY KEY,
  type_id INT8 NOT NULL REFERENCES principal_type(principal_type_id) ON UPDATE CASCADE ON DELETE RESTRICT DEFERRABLE,
  user_no INT8 NULL REFERENCES usr(user_no) ON UPDATE CASCADE ON DELETE CASCADE DEFERRABLE,
  displayname TEXT,
  default_privileges BIT(24)
);

ALTER TABLE principal ADD CONSTRAINT unique_user UNIQUE (user_no);
