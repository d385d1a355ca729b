<?php
// astcti (Ansible role asterisk_ari): make the ARI user astcti connects as exist in FreePBX's
// arimanager module, the way its "Asterisk REST Interface Users" page does, so the GUI shows
// the user and `fwconsole reload` writes it into ari_additional.conf.
// Input: $astcti = ['name' => ..., 'password' => ..., 'check' => bool], set by the caller
// before this file (the password arrives on stdin). Output: one JSON line
// {"changed": bool, "action": "unchanged|added|updated|would add|would update"}.
if (!isset($astcti) || !is_array($astcti)) {
    fwrite(STDERR, "astcti: no input (run through the Ansible role)\n");
    exit(2);
}
$bootstrap_settings['freepbx_auth'] = false;
if (!@include_once(getenv('FREEPBX_CONF') ? getenv('FREEPBX_CONF') : '/etc/freepbx.conf')) {
    fwrite(STDERR, "astcti: cannot load FreePBX (/etc/freepbx.conf): is this a FreePBX?\n");
    exit(2);
}
try {
    $ari = \FreePBX::Arimanager();
} catch (\Throwable $e) {
    fwrite(STDERR, "astcti: FreePBX's arimanager module is not available (" . $e->getMessage()
        . "): install it with `fwconsole ma downloadinstall arimanager`\n");
    exit(2);
}
$check = filter_var($astcti['check'], FILTER_VALIDATE_BOOLEAN);
$user = $ari->getUserByUsername($astcti['name']);
$same = false;
if ($user) {
    $stored = (string) $user['password'];
    if ($user['password_format'] === 'crypt') {
        $same = hash_equals($stored, crypt($astcti['password'], $stored));
    } else {
        $same = hash_equals($stored, (string) $astcti['password']);
    }
    $same = $same && empty($user['read_only']);
}
if ($same) {
    echo json_encode(['changed' => false, 'action' => 'unchanged']), "\n";
    exit(0);
}
if ($check) {
    echo json_encode(['changed' => true, 'action' => $user ? 'would update' : 'would add']), "\n";
    exit(0);
}
// read_only 0: astcti originates, bridges and redirects calls. 'crypt': FreePBX stores the
// password as Asterisk's `ari mkpasswd` hashes it.
if ($user) {
    $ok = $ari->editUser($user['id'], $astcti['name'], 0, $astcti['password'], 'crypt');
} else {
    $ok = $ari->addUser($astcti['name'], $astcti['password'], 'crypt', 0);
}
if ($ok === false) {
    $why = isset($ari->message['message']) ? $ari->message['message'] : 'no reason given';
    fwrite(STDERR, "astcti: FreePBX refused ARI user " . $astcti['name'] . ": " . $why . "\n");
    exit(1);
}
echo json_encode(['changed' => true, 'action' => $user ? 'updated' : 'added']), "\n";
