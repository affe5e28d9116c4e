// Package packaging holds no code: its tests check the Debian package
// (deb/) and the YunoHost app (yunohost/) that install booture.
package packaging
