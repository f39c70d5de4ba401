pub mod care_team;
pub mod records;
pub mod trail;
