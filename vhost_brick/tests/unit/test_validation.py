# Licensed under the Apache License, Version 2.0 (the "License"); you may
# not use this file except in compliance with the License. You may obtain
# a copy of the License at
#
#      http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS, WITHOUT
# WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied. See the
# License for the specific language governing permissions and limitations
# under the License.

import os
import stat
from unittest import mock

import fixtures
from hypothesis import given
from hypothesis import strategies as st

from vhost_brick import exception
from vhost_brick.tests import base
from vhost_brick import validation


HEX = '0123456789abcdefABCDEF'


class WWNTestCase(base.TestCase):

    def test_valid_wwn_is_returned_lower_case(self):
        self.assertEqual('naa.5001405abcdef012',
                         validation.validate_wwn('NAA.5001405ABCDEF012'))

    def test_locally_assigned_and_ieee_types_are_accepted(self):
        for wwn in ('naa.1000000000000001', 'naa.2000000000000001',
                    'naa.c000000000000001', 'naa.f000000000000001'):
            self.assertEqual(wwn, validation.validate_wwn(wwn))

    def test_invalid_wwns_are_rejected(self):
        for wwn in ('', 'naa.', 'naa.500140512345678',  # 15 digits
                    'naa.50014051234567890',  # 17 digits
                    'naa.5001405g23456789', 'iqn.2003-01.org.x:1',
                    'eui.5001405123456789', '5001405123456789',
                    'naa.5001405123456789\n', ' naa.5001405123456789',
                    'naa.50:01:40:51:23:45:67:89', '0x5001405123456789',
                    'naa.60014051234567890000000000000000'):
            self.assertRaises(exception.InvalidWWN,
                              validation.validate_wwn, wwn)

    def test_16_digit_naa_6_is_rejected_not_rewritten(self):
        err = self.assertRaises(exception.InvalidWWN,
                                validation.validate_wwn,
                                'naa.6001405bd4e8476d')
        self.assertIn('NAA type 6', str(err))

    def test_non_string_wwn_is_rejected(self):
        for wwn in (None, 5001405, b'naa.5001405123456789'):
            self.assertRaises(exception.InvalidWWN,
                              validation.validate_wwn, wwn)

    def test_bad_nexus_raises_invalid_nexus(self):
        self.assertRaises(exception.InvalidNexus,
                          validation.validate_nexus, 'naa.123')

    def test_generated_wwn_has_lio_format_and_validates(self):
        wwn = validation.generate_wwn()
        self.assertRegex(wwn, r'^naa\.5001405[0-9a-f]{9}$')
        self.assertEqual(wwn, validation.validate_wwn(wwn))

    def test_generated_wwns_differ(self):
        self.assertEqual(200, len({validation.generate_wwn()
                                   for _ in range(200)}))

    @given(st.text(alphabet=HEX, min_size=16, max_size=16))
    def test_any_16_hex_digits_of_an_8_byte_type_validate(self, digits):
        wwn = 'naa.' + digits
        if digits[0].lower() in '125cdef':
            self.assertEqual(wwn.lower(), validation.validate_wwn(wwn))
        else:
            self.assertRaises(exception.InvalidWWN,
                              validation.validate_wwn, wwn)

    @given(st.text())
    def test_arbitrary_text_validates_only_in_canonical_shape(self, text):
        try:
            result = validation.validate_wwn(text)
        except exception.InvalidWWN:
            return
        self.assertRegex(result, r'\Anaa\.[125c-f][0-9a-f]{15}\Z')
        self.assertEqual(text.lower(), result)


class DevicePathTestCase(base.TestCase):

    def setUp(self):
        super().setUp()
        self.tmp = self.useFixture(fixtures.TempDir()).path

    def assertInvalid(self, path, reason):
        err = self.assertRaises(exception.InvalidDevice,
                                validation.validate_device_path, path)
        self.assertIn(reason, str(err))
        return err

    def test_block_device_path_is_returned_as_given(self):
        link = os.path.join(self.tmp, 'by-id-link')
        real_stat = os.stat

        def fake_stat(path, *args, **kwargs):
            if path == link:
                return os.stat_result((stat.S_IFBLK | 0o660,) + (0,) * 9)
            return real_stat(path, *args, **kwargs)
        with mock.patch('os.stat', side_effect=fake_stat), \
                mock.patch.object(validation, '_sectors', return_value=2048):
            self.assertEqual(link, validation.validate_device_path(link))

    def test_block_device_without_media_is_refused(self):
        real_stat = os.stat
        link = os.path.join(self.tmp, 'unbound-loop')

        def fake_stat(path, *args, **kwargs):
            if path == link:
                return os.stat_result((stat.S_IFBLK | 0o660,) + (0,) * 9)
            return real_stat(path, *args, **kwargs)
        with mock.patch('os.stat', side_effect=fake_stat), \
                mock.patch.object(validation, '_sectors', return_value=0):
            self.assertInvalid(link, 'no media')

    def test_size_comes_from_sysfs_by_device_number(self):
        with mock.patch('builtins.open',
                        mock.mock_open(read_data='2048\n')) as sysfs:
            self.assertEqual(2048, validation._sectors(os.makedev(7, 3)))
        sysfs.assert_called_once_with('/sys/dev/block/7:3/size')

    def test_unknown_size_is_not_held_against_the_device(self):
        with mock.patch('builtins.open', side_effect=FileNotFoundError):
            self.assertIsNone(validation._sectors(os.makedev(7, 3)))

    def test_missing_path(self):
        self.assertInvalid(os.path.join(self.tmp, 'nope'), 'no such file')

    def test_relative_path(self):
        self.assertInvalid('dev/sda', 'absolute')

    def test_directory(self):
        self.assertInvalid(self.tmp, 'not a block device')

    def test_regular_file(self):
        path = os.path.join(self.tmp, 'file')
        open(path, 'w').close()
        self.assertInvalid(path, 'not a block device')

    def test_character_device(self):
        self.assertInvalid('/dev/null', 'not a block device')

    def test_symlink_to_non_block_file(self):
        link = os.path.join(self.tmp, 'link')
        os.symlink('/dev/null', link)
        self.assertInvalid(link, 'not a block device')

    def test_symlink_loop(self):
        link = os.path.join(self.tmp, 'loop')
        os.symlink(link, link)
        self.assertInvalid(link, 'symbolic links')

    def test_control_characters(self):
        for path in ('/dev/sda\n', '/dev/\x00sda', '/dev/sd\ta', '/dev/\x7f'):
            self.assertInvalid(path, 'control characters')

    def test_overlong_path(self):
        self.assertInvalid('/' + 'a' * validation.MAX_DEVICE_PATH,
                           'longer than')

    def test_non_string(self):
        for path in (None, 3, b'/dev/sda'):
            self.assertInvalid(path, 'must be a string')


class BatchTestCase(base.TestCase):

    def setUp(self):
        super().setUp()
        self.validate_device = self.useFixture(fixtures.MockPatchObject(
            validation, 'validate_device_path',
            side_effect=lambda path: path)).mock

    def test_specs_are_completed_and_wwns_canonical(self):
        self.assertEqual(
            [{'device_path': '/dev/a', 'wwn': None, 'nexus': None,
              'serial': None, 'read_only': False, 'discard': None},
             {'device_path': '/dev/b', 'wwn': 'naa.5001405abcdef012',
              'nexus': 'naa.5001405abcdef013', 'serial': 'volume-2',
              'read_only': True, 'discard': False}],
            validation.validate_endpoint_specs(iter([
                {'device_path': '/dev/a'},
                {'device_path': '/dev/b', 'wwn': 'NAA.5001405ABCDEF012',
                 'nexus': 'naa.5001405abcdef013', 'serial': 'volume-2',
                 'read_only': True, 'discard': False}])))

    def test_every_device_is_validated(self):
        self.validate_device.side_effect = exception.InvalidDevice(
            device='/dev/b', reason='not a block device')
        self.assertRaises(exception.InvalidDevice,
                          validation.validate_endpoint_specs,
                          [{'device_path': '/dev/b'}])

    def test_malformed_batches_are_invalid(self):
        for specs in (None, 'specs', {'device_path': '/dev/a'}, 42,
                      [None], [['/dev/a']], [{}], [{'wwn': None}],
                      [{'device_path': '/dev/a', 'lun': 1}]):
            self.assertRaises(exception.Invalid,
                              validation.validate_endpoint_specs, specs)

    def test_bad_wwn_or_nexus_in_a_spec_is_typed(self):
        self.assertRaises(exception.InvalidNexus,
                          validation.validate_endpoint_specs,
                          [{'device_path': '/dev/a', 'nexus': 'naa.6'}])
        self.assertRaises(exception.InvalidWWN,
                          validation.validate_endpoint_specs,
                          [{'device_path': '/dev/a', 'wwn': 7}])

    def test_repeated_device_or_wwn_is_refused(self):
        for specs in ([{'device_path': '/dev/a'}, {'device_path': '/dev/a'}],
                      [{'device_path': '/dev/a',
                        'wwn': 'naa.5001405000000001'},
                       {'device_path': '/dev/b',
                        'wwn': 'NAA.5001405000000001'}]):
            error = self.assertRaises(exception.Invalid,
                                      validation.validate_endpoint_specs,
                                      specs)
            self.assertIn('appears twice', str(error))

    def test_wwn_batch_is_canonical_and_unique(self):
        self.assertEqual(['naa.5001405000000001'],
                         validation.validate_wwns(['NAA.5001405000000001']))
        for wwns in ('naa.5001405000000001', None, [1],
                     ['naa.5001405000000001', 'naa.5001405000000001']):
            self.assertRaises(exception.Invalid, validation.validate_wwns,
                              wwns)
