"""Drop zones behind one interface, local directories and SFTP servers alike (zones issue)."""
