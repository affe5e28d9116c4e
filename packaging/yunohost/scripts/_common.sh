#!/bin/bash
# Shared by the app's scripts (sourced after YunoHost's helpers).
# shellcheck disable=SC2034 # the variables are for the scripts that source it

# Where the app puts its files besides the Debian package's.
booture_config=/etc/booture/yunohost.toml
booture_dropin=/etc/systemd/system/bootured.service.d/yunohost.conf
booture_dnsmasq=/etc/dnsmasq.d/booture

# The state bootured keeps: identity, mesh credentials, members, plugin pins.
booture_state=/var/lib/booture

# booture_write_config writes the app's configuration, the systemd drop-in
# pointing bootured at it and the dnsmasq setting that frees port 53 on the
# mesh addresses, before the package's postinst starts the daemon.
booture_write_config() {
	mkdir -p /etc/booture "$(dirname "$booture_dropin")"
	ynh_config_add --template="booture.toml" --destination="$booture_config"
	chmod 0644 "$booture_config"
	ynh_config_add --template="systemd-override.conf" --destination="$booture_dropin"
	ynh_config_add --template="dnsmasq.conf" --destination="$booture_dnsmasq"
	systemctl daemon-reload
	ynh_systemctl --service=dnsmasq --action=restart
}

# booture_install_deb installs the Debian package of this machine's
# architecture (the manifest's sources); apt brings its Recommends
# (wireguard-tools, nftables). The admin's changes to the package's
# conffile are kept (confold).
booture_install_deb() {
	local dir
	dir=$(mktemp -d)
	ynh_setup_source --dest_dir="$dir"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
		-o Dpkg::Options::=--force-confold "$dir/booture.deb"
	ynh_safe_rm "$dir"
}

# booture_remove_files removes what booture_write_config wrote.
booture_remove_files() {
	ynh_safe_rm "$booture_dropin"
	ynh_safe_rm "$booture_config"
	ynh_safe_rm "$booture_dnsmasq"
	systemctl daemon-reload
	ynh_systemctl --service=dnsmasq --action=restart
}
